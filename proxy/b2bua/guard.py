"""The guard around every entry point of the call flows: an error inside a call's handling
(a bug, or input no check caught) ends that call cleanly instead of escaping to the transport
and leaving it half-done. The caller gets a final answer (400 with the parser's reason where
the input is at fault, else 500), the B leg is released as its state needs (CANCEL before an
answer, BYE after), the CDR is written (outcome ``failed``, cause ``internal_error:<type>`` or
``bad_request``) and so every transaction ends. Logged with the exception's type and
where it was raised only: its text may quote message content (a number)."""

from __future__ import annotations

import traceback
from typing import TYPE_CHECKING

from ..sip.errors import SipParseError
from ..sip.transaction import (
    RequestReceived,
    ResponseReceived,
    ServerTransaction,
    TransactionTerminated,
    TransactionTimeout,
)
from .call import ENDED, Call, Leg
from .in_dialog import Forwarded
from .teardown import Teardown

if TYPE_CHECKING:
    from collections.abc import Callable


class GuardFlow(Teardown):
    """Ends the call an event or a timer failed in (see the module docstring)."""

    def _internal_error(self, event: object, exc: Exception, now: float) -> None:
        """``handle`` raised on ``event``: end what it belonged to cleanly."""
        self._report(exc)
        server: ServerTransaction | None = None
        data: object = None
        if isinstance(event, RequestReceived):
            server = event.transaction
            data = server.tu_data if server is not None else None
            if data is None:
                data = self._leg_of(event)
        elif isinstance(event, (ResponseReceived, TransactionTimeout, TransactionTerminated)):
            txn = event.transaction
            data = txn.tu_data if txn is not None else None
        call = _call_of(data)
        status, reason, cause = _answer_for(exc)
        if isinstance(event, ResponseReceived) and status < 500:
            # the callee's response was at fault, not the caller's request (§21.5.3)
            status, reason, cause = 502, "Bad Response From Callee", "bad_response"
        if call is not None:
            self.fail_call(call, status, reason, cause, now)
        if server is not None:
            last = server.last_response
            if last is None or last.status < 200:
                self._attempt(self._reply, server, status, reason, now)

    def _timer_failed(self, arg: object, exc: Exception, now: float) -> None:
        """A B2BUA timer's callback raised: end its call (the timers' argument is the call, or
        a (call, transaction) pair for failover)."""
        self._report(exc)
        if isinstance(arg, tuple) and arg:
            arg = arg[0]
        call = _call_of(arg)
        if call is not None:
            status, reason, cause = _answer_for(exc)
            self.fail_call(call, status, reason, cause, now)

    def fail_call(self, call: Call, status: int, reason: str | None, cause: str, now: float) -> None:
        """End ``call`` after an error: each step on its own, so one that fails again does not
        keep the others (above all the CDR) from happening."""
        if call.state is ENDED:
            return
        call.cause = cause
        self._attempt(self._terminate_pending, call, now)
        if not call.final_sent:
            call.code = status
            self._attempt(self._answer_caller, call, status, reason, now)
        elif call.a.dialog is not None:
            self._attempt(self._send_bye, call.a, now)
        b = call.b
        if b is not None:
            if call.answered_at is not None and b.dialog is not None:
                if not call.b_acked:
                    self._attempt(self._confirm_b, call, now)
                self._attempt(self._send_bye, b, now)
            elif call.b_txn is not None:
                self._attempt(self._cancel_b, call, now)
        if not self._attempt(self._end, call, "failed", now):
            # the CDR could not be written: at least forget the call
            call.state = ENDED
            call.cancel_timers()
            self.calls.pop(call.id, None)
            for leg in (call.a, b):
                if leg is not None:
                    self.dialogs.pop((leg.call_id, leg.local_tag), None)

    def _attempt(self, step: Callable[..., object], *args: object) -> bool:
        try:
            step(*args)
        except Exception as exc:  # noqa: BLE001 - a failed step of ending a call must not stop the next
            self._report(exc)
            return False
        return True

    def _leg_of(self, event: RequestReceived) -> Leg | None:
        try:
            to_tag = event.request.to_tag
            return self.dialogs.get((event.request.call_id, to_tag)) if to_tag else None
        except Exception:  # noqa: BLE001 - only a lookup to find the call; the error is reported already
            return None

    def _report(self, exc: Exception) -> None:
        self._count("internal_error")
        metrics = self.metrics
        if metrics is not None and hasattr(metrics, "count_internal_error"):
            metrics.count_internal_error()
        frames = traceback.extract_tb(exc.__traceback__)[-3:]
        where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))
        self.log.error("call.internal_error", error=type(exc).__name__, where=where)


def _call_of(data: object) -> Call | None:
    if isinstance(data, Call):
        return data
    if isinstance(data, Forwarded):
        return data.call
    if isinstance(data, Leg):
        return data.call
    return None


def _answer_for(exc: Exception) -> tuple[int, str | None, str]:
    """(status, reason, CDR cause): the input's fault (400 with the parser's reason), else 500."""
    if isinstance(exc, SipParseError):
        return exc.status if 400 <= exc.status < 500 else 400, exc.reason, "bad_request"
    return 500, None, f"internal_error:{type(exc).__name__}"


__all__ = ["GuardFlow"]
