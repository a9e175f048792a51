"""A client of rtpengine's ng control protocol: bencoded dictionaries over UDP.

Each request is one datagram ``COOKIE SP BENCODED-DICT`` (the ``bencode.py`` package both ways:
it reads dictionaries in any key order, and rtpengine does not sort its keys); rtpengine answers with the same cookie
in front of its reply. The cookie is what matches a reply to its request, and it is also what
makes retries safe: rtpengine keeps the replies of recent cookies and answers a repeated
cookie from that cache instead of doing the command twice. So a request that gets no answer in
``timeout_s`` is sent again, unchanged, up to ``retries`` more times; then that rtpengine is
marked down for ``down_s`` and a request that may move (a new call's ``offer``) goes to the
next one, under a new cookie (a cookie is scoped to the rtpengine that saw it).

Nothing here blocks the event loop: one connected UDP socket per rtpengine (ICMP "port
unreachable" then fails a request at once instead of after every timeout), futures keyed by
cookie, ``asyncio.wait_for`` per attempt.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import bencodepy  # type: ignore[import-untyped]  # bencode.py ships no type hints

from ..observability.logging import get_logger

__all__ = ["Engine", "NgClient", "NgError", "NgUnavailable"]

log = get_logger(__name__)

_MAX_DATAGRAM: Final = 65535


class NgError(Exception):
    """rtpengine answered ``result = error`` (its ``error-reason`` is the message)."""


class NgUnavailable(Exception):
    """No rtpengine answered the request (all timed out, refused or are marked down)."""


@dataclass(slots=True)
class Engine:
    """One rtpengine: its ng address, weight and health."""

    host: str
    port: int
    weight: int = 1
    down_until: float = 0.0
    """Monotonic time before which it gets no new requests (0: up)."""

    @property
    def label(self) -> str:
        """``host:port`` (IPv6 in brackets), for logs and metrics."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class _Protocol(asyncio.DatagramProtocol):
    """The socket of one rtpengine: replies resolve the future of their cookie."""

    def __init__(self, client: NgClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's UDP transport is a DatagramTransport in all but its class tree
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.client.reply_received(data)

    def error_received(self, exc: Exception) -> None:
        # connected UDP: ICMP port unreachable of an earlier send (nothing listens there)
        self.client.engine_refused(self.engine)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class NgClient:
    """Sends ng commands to a set of rtpengines, with retries, failover and health.

    ``request(command, sticky=None)`` picks an rtpengine that is up (weighted random) and
    fails over to the others; ``sticky`` sends only to the rtpengine that holds a call (its
    ``answer`` and ``delete`` mean nothing to another one). Counters are in ``counts``.
    """

    def __init__(self, engines: Sequence[tuple[str, int, int]], *, timeout_s: float = 0.5,
                 retries: int = 2, down_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None,
                 cookie_prefix: str | None = None) -> None:
        if not engines:
            raise ValueError("at least one rtpengine is needed")
        if timeout_s <= 0 or retries < 0 or down_s < 0:
            raise ValueError("timeout_s must be > 0, retries and down_s >= 0")
        self.engines = [Engine(host, port, weight) for host, port, weight in engines]
        self.timeout_s = timeout_s
        self.retries = retries
        self.down_s = down_s
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        # a new prefix per process: rtpengine's cookie cache must not answer our new request
        # with the reply to the previous process's request of the same number
        self._prefix = cookie_prefix if cookie_prefix is not None else os.urandom(4).hex()
        self._serial = 0
        self._pending: dict[bytes, tuple[Engine, asyncio.Future[dict[str, Any]]]] = {}
        self._sockets: dict[int, _Protocol] = {}
        self.counts: dict[str, int] = {"requests": 0, "errors": 0, "timeouts": 0,
                                       "refused": 0, "unavailable": 0, "stray_replies": 0}
        self.commands: dict[str, int] = {}

    # -- health ------------------------------------------------------------------------------

    def up(self, engine: Engine) -> bool:
        """Whether ``engine`` takes new requests now."""
        return engine.down_until <= self._clock()

    def _mark_down(self, engine: Engine, why: str) -> None:
        if self.down_s > 0:
            was_up = self.up(engine)
            engine.down_until = self._clock() + self.down_s
            if was_up:
                log.warning("media.rtpengine_down", rtpengine=engine.label, reason=why,
                            for_s=self.down_s)

    def _order(self) -> Iterator[Engine]:
        """The rtpengines that are up, in a weighted random order (weight = share of firsts)."""
        candidates = [e for e in self.engines if self.up(e)]
        while candidates:
            total = sum(e.weight for e in candidates)
            pick = self._rng.uniform(0, total)
            for i, engine in enumerate(candidates):
                pick -= engine.weight
                if pick <= 0 or i == len(candidates) - 1:
                    yield candidates.pop(i)
                    break

    # -- requests ----------------------------------------------------------------------------

    def _cookie(self) -> bytes:
        self._serial += 1
        return f"{self._prefix}_{self._serial}".encode()

    async def request(self, command: Mapping[str, Any],
                      sticky: Engine | None = None) -> tuple[dict[str, Any], Engine]:
        """Send ``command`` (its ``"command"`` key names it); the reply dict and who answered.

        Raises:
            NgError: rtpengine answered with ``result = error``.
            NgUnavailable: no rtpengine answered.
        """
        name = str(command.get("command", "?"))
        self.commands[name] = self.commands.get(name, 0) + 1
        payload = bencodepy.encode(dict(command))
        engines: Iterator[Engine] = iter((sticky,)) if sticky is not None else self._order()
        for engine in engines:
            reply = await self._ask(engine, payload, name)
            if reply is None:
                continue
            if reply.get("result") == "error":
                self.counts["errors"] += 1
                raise NgError(str(reply.get("error-reason", "unknown error")))
            return reply, engine
        self.counts["unavailable"] += 1
        raise NgUnavailable(name)

    async def _ask(self, engine: Engine, payload: bytes, name: str) -> dict[str, Any] | None:
        """One request to one rtpengine, sent up to 1 + retries times under one cookie."""
        cookie = self._cookie()
        datagram = cookie + b" " + payload
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[cookie] = (engine, future)
        try:
            proto = await self._socket(engine)
            for _ in range(1 + self.retries):
                self.counts["requests"] += 1
                if proto.transport is None:
                    break
                proto.transport.sendto(datagram)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), self.timeout_s)
                except TimeoutError:
                    continue
                except ConnectionRefusedError:
                    self.counts["refused"] += 1
                    self._mark_down(engine, "refused")
                    return None
        except OSError as exc:  # the socket could not be made (bad address, no route)
            self.counts["refused"] += 1
            self._mark_down(engine, type(exc).__name__)
            return None
        finally:
            self._pending.pop(cookie, None)
            if not future.done():
                future.cancel()
        self.counts["timeouts"] += 1
        log.warning("media.ng_timeout", rtpengine=engine.label, command=name,
                    attempts=1 + self.retries)
        self._mark_down(engine, "timeout")
        return None

    async def _socket(self, engine: Engine) -> _Protocol:
        key = id(engine)
        proto = self._sockets.get(key)
        if proto is None or proto.transport is None:
            loop = asyncio.get_running_loop()
            _, proto = await loop.create_datagram_endpoint(
                lambda: _Protocol(self, engine), remote_addr=(engine.host, engine.port))
            self._sockets[key] = proto
        return proto

    def reply_received(self, data: bytes) -> None:
        """A datagram from an rtpengine: resolve the request of its cookie (others: counted)."""
        cookie, _, body = data.partition(b" ")
        entry = self._pending.get(cookie)
        if entry is None or entry[1].done():
            self.counts["stray_replies"] += 1  # a late answer to a retry we gave up on
            return
        try:
            decoded = bencodepy.decode(body)
        except bencodepy.BencodeDecodeError:
            self.counts["stray_replies"] += 1
            return
        if not isinstance(decoded, dict):
            self.counts["stray_replies"] += 1
            return
        entry[1].set_result(_text_keys(decoded))

    def engine_refused(self, engine: Engine) -> None:
        """ICMP unreachable on ``engine``'s socket: its requests in flight fail now."""
        for owner, future in list(self._pending.values()):
            if owner is engine and not future.done():
                future.set_exception(ConnectionRefusedError(engine.label))

    async def ping(self) -> bool:
        """Whether at least one rtpengine answers ``ping`` (readiness); marks the rest down."""
        ok = False
        for engine in self.engines:
            reply = await self._ask(engine, bencodepy.encode({"command": "ping"}), "ping")
            if reply is not None and reply.get("result") == "pong":
                engine.down_until = 0.0
                ok = True
        return ok

    def close(self) -> None:
        """Close the sockets; requests in flight fail as unavailable."""
        for proto in self._sockets.values():
            if proto.transport is not None:
                proto.transport.close()
        self._sockets.clear()
        for _, future in self._pending.values():
            if not future.done():
                future.cancel()


def _text_keys(value: Any) -> Any:
    """A decoded reply with text keys and text strings (rtpengine's are ASCII/UTF-8)."""
    if isinstance(value, dict):
        return {_text(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text_keys(v) for v in value]
    if isinstance(value, bytes):
        return _text(value)
    return value


def _text(value: Any) -> Any:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
