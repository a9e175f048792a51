"""SIP over TCP and TLS: one protocol object per connection (RFC 3261 §18, RFC 5626 §3.5.1).

Frames the byte stream by Content-Length with :class:`StreamFramer`, answers CRLF keep-alive
pings, closes connections idle longer than the configured timeout, and queues what is sent
while an outgoing connection is still being set up.

A peer cannot hold a connection open by trickling bytes (slowloris): once a message has begun,
it must be complete within ``message_timeout``, and an accepted connection must deliver its
first message (or keep-alive) within that time too; otherwise the connection is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import structlog

from proxy.sip.errors import SipParseError
from proxy.sip.message import Request, Response
from proxy.sip.parser import KEEPALIVE, StreamFramer, parse_message

from .address import Address
from .replies import error_reply, stream_head_reply
from .stats import TransportStats

__all__ = ["StreamConnection"]

_log = structlog.get_logger(__name__)

#: Messages queued on a connection that is still connecting; more are refused (send error).
MAX_PENDING = 1024
#: Bytes the kernel has not taken yet; past this the peer is not reading and is cut off.
MAX_WRITE_BUFFER = 4 * 1024 * 1024

OnMessage = Callable[[Request | Response, Address], None]


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, accepted by a listener or opened by ``send``.

    ``key`` is the remote ``(host, port)`` under which the connection is indexed for reuse:
    the peer address for accepted connections, the destination asked for on outgoing ones.
    """

    def __init__(
        self,
        kind: str,
        on_message: OnMessage,
        stats: TransportStats,
        *,
        max_message_size: int,
        idle_timeout: float,
        message_timeout: float = 0.0,
        on_open: Callable[[StreamConnection], None],
        on_lost: Callable[[StreamConnection], None],
        key: tuple[str, int] | None = None,
    ) -> None:
        self.kind = kind
        self.key = key
        self.outgoing = key is not None
        self.peer: Address | None = None
        self._on_message = on_message
        self._stats = stats
        self._framer = StreamFramer(max_message_size)
        self._idle_timeout = idle_timeout
        #: seconds a begun message (or an accepted connection's first one) may take; 0: no limit
        self._message_timeout = message_timeout
        #: loop time by which the message being received must be complete, if one has begun
        self._message_deadline: float | None = None
        self._timer_at = 0.0
        #: counted against its source's connection limit by the transports (accepted only)
        self.counted = False
        self._on_open = on_open
        self._on_lost = on_lost
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] | None = [] if self.outgoing else None
        self._loop = asyncio.get_running_loop()
        self._last_activity = self._loop.time()
        self._idle_handle: asyncio.TimerHandle | None = None
        self._closed = False

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Index the connection, start the idle timer, flush what was queued while connecting."""
        # uvloop's transports do not subclass asyncio's ABCs: no isinstance check
        self._transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        host, port = (peername[0], peername[1]) if peername else ("", 0)
        self.peer = Address(self.kind, host, port)
        if self.key is None:
            self.key = (host, port)
        self._stats.tcp_connections_open += 1
        if not self.outgoing:
            self._stats.tcp_connections_accepted += 1
        self._on_open(self)
        if self._closed:
            return  # refused by on_open (a connection limit)
        self._touch()
        if not self.outgoing and self._message_timeout > 0:
            self._message_deadline = self._last_activity + self._message_timeout
        self._arm(self._last_activity + min(self._idle_timeout, self._message_timeout or self._idle_timeout))
        pending, self._pending = self._pending, None
        if pending:
            for data in pending:
                self.write(data)

    def data_received(self, data: bytes) -> None:
        """Frame, parse and hand up every complete message; answer keep-alives."""
        self._touch()
        try:
            items = self._framer.feed(data)
        except SipParseError as exc:
            self._framing_failed(exc)
            return
        except Exception:  # noqa: BLE001 - one bad message or handler must never stop the connection
            self._stats.parse_errors += 1
            self._stats.dropped += 1
            self.close()
            return
        if self._message_timeout > 0:
            self._track_message(bool(items))
        stats = self._stats
        for item in items:
            if item is KEEPALIVE:
                # RFC 5626 §3.5.1: a double-CRLF "ping" is answered with a single-CRLF "pong"
                stats.keepalives += 1
                self._write_raw(b"\r\n")
                continue
            assert isinstance(item, bytes)
            try:
                message = parse_message(item, stream=True)
            except SipParseError as exc:
                # framing is intact (Content-Length was read), so the stream goes on
                stats.parse_errors += 1
                self._answer(error_reply(exc))
                continue
            except Exception:  # noqa: BLE001 - one bad message or handler must never stop the connection
                stats.parse_errors += 1
                stats.dropped += 1
                continue
            stats.received += 1
            assert self.peer is not None
            try:
                self._on_message(message, self.peer)
            except Exception:  # noqa: BLE001 - one bad message or handler must never stop the connection
                _log.exception("transport.handler_failed", transport=self.kind)

    def eof_received(self) -> bool | None:
        """The peer closed its side: close ours too (SIP has no use for half-open streams)."""
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        """Unindex the connection and stop its timer."""
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        self._closed = True
        if self._transport is not None:
            self._stats.tcp_connections_open -= 1
        self._on_lost(self)

    # -- sending -------------------------------------------------------------------------------
    def write(self, data: bytes) -> bool:
        """Send one serialised message, or queue it while connecting; False if it cannot go."""
        transport = self._transport
        if transport is None:
            pending = self._pending
            if self._closed or pending is None or len(pending) >= MAX_PENDING:
                return False
            pending.append(data)
            return True
        if transport.is_closing():
            return False
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            # the peer stopped reading: cut it off rather than grow memory without bound
            transport.abort()
            return False
        transport.write(data)
        self._stats.sent += 1
        self._touch()
        return True

    def _write_raw(self, data: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _answer(self, reply: bytes | None) -> None:
        if reply is None:
            self._stats.dropped += 1
            return
        self._write_raw(reply)
        self._stats.sent += 1
        self._stats.bad_requests_answered += 1

    def _framing_failed(self, exc: SipParseError) -> None:
        """No Content-Length or too large: answer if the head allows it, then close (§18.3)."""
        self._stats.parse_errors += 1
        buffered = bytes(getattr(self._framer, "_buf", b""))
        self._answer(stream_head_reply(exc, buffered))
        self.close()

    # -- lifetime ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True once the connection is set up and until it starts closing."""
        return self._transport is not None and not self._transport.is_closing()

    @property
    def usable(self) -> bool:
        """True while messages written now can still go out (connecting or connected)."""
        if self._closed:
            return False
        return self._transport is None or not self._transport.is_closing()

    def close(self) -> None:
        """Close after flushing what is already written."""
        self._closed = True
        self._pending = None
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        """Close at once, discarding unsent data."""
        self._closed = True
        self._pending = None
        if self._transport is not None:
            self._transport.abort()

    def connect_failed(self) -> None:
        """The outgoing connection could not be set up: drop the queue."""
        self._closed = True
        self._pending = None

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    def _track_message(self, completed: bool) -> None:
        """After a read: start the clock of a message that has begun, stop it when none is
        pending. A complete message ends the wait for the first one."""
        if self._framer.buffered == 0:
            self._message_deadline = None
        elif completed or self._message_deadline is None:
            deadline = self._last_activity + self._message_timeout
            self._message_deadline = deadline
            if self._idle_handle is None or deadline < self._timer_at:
                self._arm(deadline)
        # bytes that continue the pending message keep its deadline: trickling buys no time

    def _arm(self, when: float) -> None:
        # one timer per connection, re-armed lazily instead of on every read or write
        if self._idle_handle is not None:
            self._idle_handle.cancel()
        self._timer_at = when
        self._idle_handle = self._loop.call_at(when, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_handle = None
        if self._closed:
            return
        now = self._loop.time()
        deadline = self._message_deadline
        if deadline is not None and now >= deadline:
            self._stats.tcp_message_timeouts += 1
            _log.info("transport.message_timeout", transport=self.kind,
                      waited_s=self._message_timeout, buffered=self._framer.buffered)
            self.abort()
            return
        idle_at = self._last_activity + self._idle_timeout
        if now >= idle_at:
            self.close()
            return
        self._arm(idle_at if deadline is None else min(idle_at, deadline))

    def __repr__(self) -> str:
        return f"<StreamConnection {self.kind} {self.key} {'out' if self.outgoing else 'in'}>"


