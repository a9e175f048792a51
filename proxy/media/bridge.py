"""rtpengine as the sans-IO B2BUA's media relay (``proxy.b2bua.MediaControl``).

Each ``offer``/``answer``/``delete`` of the B2BUA becomes an ng request run as a task on the
loop; its result is handed back through ``done(sdp_or_None, now)`` and then the SIP stack is
flushed (what the B2BUA queued in ``done`` goes out now, not at the next datagram). A call's
answer and delete go to the rtpengine that took its offer; a delete waits for the call's
requests in flight, so a call cancelled while its offer is out is still deleted.

The options sent with every offer and answer are the privacy floor of docs/media.md:
``replace = [origin, session connection]`` (rtpengine's address in ``o=`` and ``c=``),
``ICE = remove`` (candidates carry the peers' addresses), ``generate RTCP = on`` (rtpengine
consumes the peers' RTCP reports, whose SDES CNAME can carry a number, and sends its own),
``rtcp-mux = [demux, reject]`` (no party multiplexes RTCP onto the RTP port). Each SDP rtpengine
returns then tells its party to send RTCP nowhere (:func:`.rtcp.rtcp_nowhere`): rtpengine
forwards a compound without a report (SDES alone, BYE + SDES) whatever it is told.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..config import MediaConfig
from ..observability.logging import get_logger
from .ng import Engine, NgClient, NgError, NgUnavailable
from .rtcp import rtcp_nowhere

__all__ = ["PRIVACY_OPTIONS", "MediaBridge"]

log = get_logger(__name__)

PRIVACY_OPTIONS: Final[Mapping[str, Any]] = {
    "replace": ["origin", "session connection"],
    "ICE": "remove",
    "generate RTCP": "on",
    "rtcp-mux": ["demux", "reject"],
}
"""Sent with every offer and answer, whatever ``media.flags`` adds (see the module docstring)."""

Done = Callable[[bytes | None, float], None]


class MediaBridge:
    """The B2BUA's media relay: ng requests as tasks, results back to the B2BUA."""

    def __init__(self, client: NgClient, config: MediaConfig, *, flush: Callable[[], None],
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.client = client
        self.flags = list(config.flags)
        self._flush = flush
        self._loop = loop
        #: the rtpengine holding each call's session, and the call's requests in flight
        self._engines: dict[str, Engine] = {}
        self._inflight: dict[str, set[asyncio.Task[Any]]] = {}
        self.counts: dict[str, int] = {"offers": 0, "answers": 0, "deletes": 0, "failed": 0}

    @classmethod
    def from_config(cls, config: MediaConfig, *, flush: Callable[[], None]) -> MediaBridge:
        """A bridge to ``config.rtpengines`` (``config.mode`` must be ``rtpengine``)."""
        client = NgClient([(e.host, e.port, e.weight) for e in config.rtpengines],
                          timeout_s=config.timeout_s, retries=config.retries,
                          down_s=config.down_s)
        return cls(client, config, flush=flush)

    @property
    def sessions(self) -> int:
        """Calls with a media session at an rtpengine now."""
        return len(self._engines)

    def _command(self, name: str, call_key: str, from_tag: str, to_tag: str,
                 sdp: bytes) -> dict[str, Any]:
        command: dict[str, Any] = {"command": name, "call-id": call_key, "from-tag": from_tag,
                                   "to-tag": to_tag, "sdp": sdp, **PRIVACY_OPTIONS}
        if self.flags:
            command["flags"] = self.flags
        return command

    # -- the B2BUA's MediaControl ------------------------------------------------------------

    def offer(self, call_key: str, from_tag: str, to_tag: str, sdp: bytes, done: Done) -> None:
        """An offer; a new call's goes to any rtpengine that is up, a re-offer to its own."""
        self.counts["offers"] += 1
        command = self._command("offer", call_key, from_tag, to_tag, sdp)
        self._run(call_key, self._sdp_request(call_key, command), done)

    def answer(self, call_key: str, from_tag: str, to_tag: str, sdp: bytes, done: Done) -> None:
        """The answer to the call's offer, to the rtpengine that took the offer."""
        self.counts["answers"] += 1
        command = self._command("answer", call_key, from_tag, to_tag, sdp)
        if call_key not in self._engines:
            self._run(call_key, _fail(), done)
            return
        self._run(call_key, self._sdp_request(call_key, command), done)

    def delete(self, call_key: str) -> None:
        """Delete the call's session once its requests in flight are done."""
        self.counts["deletes"] += 1
        waiting = list(self._inflight.get(call_key, ()))
        task = self._loop_().create_task(self._delete(call_key, waiting))
        self._track(call_key, task)

    # -- tasks -------------------------------------------------------------------------------

    def _loop_(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _track(self, call_key: str, task: asyncio.Task[Any]) -> None:
        self._inflight.setdefault(call_key, set()).add(task)

        def forget(t: asyncio.Task[Any]) -> None:
            tasks = self._inflight.get(call_key)
            if tasks is not None:
                tasks.discard(t)
                if not tasks:
                    del self._inflight[call_key]

        task.add_done_callback(forget)

    def _run(self, call_key: str, request: Any, done: Done) -> None:
        loop = self._loop_()
        task: asyncio.Task[bytes | None] = loop.create_task(request)
        self._track(call_key, task)

        def finished(t: asyncio.Task[bytes | None]) -> None:
            sdp = None if t.cancelled() or t.exception() is not None else t.result()
            if sdp is None:
                self.counts["failed"] += 1
            try:
                done(sdp, loop.time())
            except Exception:
                log.exception("media.resume_failed")
            self._flush()

        task.add_done_callback(finished)

    async def _sdp_request(self, call_key: str, command: dict[str, Any]) -> bytes | None:
        """The rewritten SDP of an offer or answer, or None (logged) when it failed."""
        try:
            reply, engine = await self.client.request(command, self._engines.get(call_key))
        except NgUnavailable:
            log.warning("media.unavailable", command=command["command"])
            return None
        except NgError as exc:
            # rtpengine's reason names the SDP problem, never a number of ours
            log.warning("media.rejected", command=command["command"], reason=str(exc)[:200])
            return None
        sdp = reply.get("sdp")
        if not isinstance(sdp, str):
            log.warning("media.bad_reply", command=command["command"])
            return None
        self._engines[call_key] = engine
        return rtcp_nowhere(sdp.encode())

    async def _delete(self, call_key: str, waiting: list[asyncio.Task[Any]]) -> None:
        if waiting:
            await asyncio.wait(waiting)
        engine = self._engines.pop(call_key, None)
        if engine is None:
            return  # no session was made
        try:
            await self.client.request({"command": "delete", "call-id": call_key}, engine)
        except (NgUnavailable, NgError) as exc:
            # rtpengine drops a session whose media stopped on its own (its --timeout)
            log.warning("media.delete_failed", error=type(exc).__name__)

    def holder(self, call_key: str) -> str | None:
        """``host:port`` of the rtpengine holding the call's session, if one does."""
        engine = self._engines.get(call_key)
        return engine.label if engine is not None else None

    def adopt(self, call_key: str, holder: str) -> None:
        """A call rebuilt from its record (a restart or a takeover): its session is on the
        rtpengine ``holder`` names, so its re-offers, answers and delete go there."""
        for engine in self.client.engines:
            if engine.label == holder:
                self._engines[call_key] = engine
                return
        log.warning("media.adopt_unknown_rtpengine")  # no longer configured: nothing to delete

    async def ready(self) -> bool:
        """Whether an rtpengine answers ``ping`` (for ``/readyz``)."""
        return await self.client.ping()

    async def close(self) -> None:
        """Let the deletes in flight finish (bounded by their timeouts), then close."""
        tasks = [t for ts in self._inflight.values() for t in ts]
        if tasks:
            await asyncio.wait(tasks, timeout=self.client.timeout_s * (1 + self.client.retries))
        self.client.close()


async def _fail() -> bytes | None:
    """An answer for a call without a session (its offer failed or went unanchored)."""
    return None
