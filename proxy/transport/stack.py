"""Glue between the asyncio transports and the sans-IO transaction layer + transaction user.

Reads parsed messages from :class:`SipTransports`, feeds them to the :class:`TransactionLayer`
with ``now = loop.time()``, hands the resulting events to the transaction user, writes what the
layer queued, and keeps exactly one loop timer armed at the earliest deadline of the layer and
the TU (aioquic's ``get_timer()`` pattern).
"""

from __future__ import annotations

import asyncio
import sys
import traceback
from collections.abc import Callable
from time import perf_counter
from typing import Protocol

from ..observability.logging import get_logger
from ..sip.message import Request, Response
from ..sip.transaction import Address, TransactionLayer
from .pike import SourceLimits

_log = get_logger(__name__)


class TransactionUser(Protocol):
    """What sits on top of the transaction layer (the B2BUA, or a test UAS)."""

    def handle(self, event: object, now: float) -> None: ...

    def next_deadline(self) -> float | None: ...

    def handle_timers(self, now: float) -> None: ...


class SipStack:
    """Drives a TransactionLayer and a TransactionUser from an asyncio loop."""

    def __init__(
        self,
        layer: TransactionLayer,
        send: Callable[[Request | Response, Address], None],
        loop: asyncio.AbstractEventLoop,
        *,
        trace: bool = False,
        source_limits: SourceLimits | None = None,
    ) -> None:
        """``trace``: log every message received and sent at debug level (``sip.recv`` /
        ``sip.sent``, the whole message; the log redaction replaces the numbers in it).
        ``source_limits``: the per-source rate limit the layer asks about new requests."""
        self.layer = layer
        self.source_limits = source_limits
        if source_limits is not None:
            layer.source_limit = source_limits.check
        self._trace = trace
        #: called with (seconds spent handling a message, now): the load signal for admission
        self.on_busy: Callable[[float, float], None] | None = None
        self.tu: TransactionUser | None = None
        self._send = send
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None
        #: set by the first message of the read batch in progress (its perf_counter() when the
        #: load signal is on, else 0.0); None between batches
        self._batch_started: float | None = None
        self.errors = 0

    def attach(self, tu: TransactionUser) -> None:
        """Set the transaction user that receives events."""
        self.tu = tu

    # called by the transports for every parsed message
    def on_message(self, message: Request | Response, source: Address, delay: float = 0.0) -> None:
        """Feed one parsed message through the layer and the TU and write what it queued;
        ``delay``: seconds it queued in the kernel before it was read (UDP; 0 when unknown)."""
        self.on_datagram(message, source, delay)
        self.end_batch()

    def on_datagram(self, message: Request | Response, source: Address, delay: float = 0.0) -> None:
        """:meth:`on_message` for one message of a UDP read batch: what it queues is written
        by :meth:`end_batch`, after the batch. Under load a batch holds many datagrams; sent
        one by one amid the work, each send found a peer asleep on its socket and paid the
        kernel's wake-up (15% of sipmask's CPU in ``perf``); sent together, the first wakes it
        and the rest are queued to a peer already running. At most ``_BATCH`` messages' work
        (a few milliseconds at full load) is added to a response's latency; a lone datagram
        is sent at once."""
        if self._batch_started is None:
            # the clock is read only for the load signal, which is off by default
            self._batch_started = perf_counter() if self.on_busy is not None else 0.0
        now = self._loop.time()
        if self._trace:
            self._log_message("sip.recv", message, source)
        try:
            events = self.layer.receive(message, source, now, delay)
            tu = self.tu
            if tu is not None:
                for event in events:
                    tu.handle(event, now)
        except Exception:  # noqa: BLE001 - one bad message must never stop the loop
            self.errors += 1
            self._report()

    def end_batch(self) -> None:
        """Write what the batch's messages queued; report the time the batch took (the load
        signal of admission control)."""
        started = self._batch_started
        if started is None:
            return  # a wake-up with nothing read: nothing queued, the timer is as it was
        self._batch_started = None
        self.flush()
        on_busy = self.on_busy
        if on_busy is not None:
            on_busy(perf_counter() - started, self._loop.time())

    def on_send_error(self, dest: Address) -> None:
        """A transport could not reach ``dest``: fail the transactions waiting on it."""
        now = self._loop.time()
        try:
            events = self.layer.transport_error(dest, now)
            if self.tu is not None:
                for event in events:
                    self.tu.handle(event, now)
        except Exception:  # noqa: BLE001
            self.errors += 1
            self._report()
        self.flush()

    def flush(self) -> None:
        """Write everything queued and re-arm the timer if the earliest deadline moved earlier."""
        send = self._send
        trace = self._trace
        for item in self.layer.take_outgoing():
            if trace:
                self._log_message("sip.sent", item.message, item.dest)
            send(item.message, item.dest)
        self._arm()

    def _arm(self) -> None:
        deadline = self.layer.next_deadline()
        tu = self.tu
        if tu is not None:
            tu_deadline = tu.next_deadline()
            if tu_deadline is not None and (deadline is None or tu_deadline < deadline):
                deadline = tu_deadline
        if deadline is None:
            return
        armed = self._armed_at
        if armed is not None and armed <= deadline:
            return  # the armed timer fires first; it re-arms for later deadlines
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = deadline
        self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._armed_at = None
        now = self._loop.time()
        try:
            events = self.layer.handle_timers(now)
            tu = self.tu
            if tu is not None:
                for event in events:
                    tu.handle(event, now)
                tu.handle_timers(now)
        except Exception:  # noqa: BLE001
            self.errors += 1
            self._report()
        self.flush()

    @staticmethod
    def _log_message(event: str, message: Request | Response, peer: Address) -> None:
        text = message.serialise().decode("utf-8", "replace")
        _log.debug(event, peer=f"{peer.transport}:{peer.host}:{peer.port}", message=text)

    def _report(self) -> None:
        # The exception text may quote message content; log only the type and location.
        etype, _, tb = sys.exc_info()
        frames = traceback.extract_tb(tb)[-3:] if tb else []
        where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))
        _log.error("sip.internal_error", error=etype.__name__ if etype else "?", where=where)

    def close(self) -> None:
        """Cancel the armed timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
