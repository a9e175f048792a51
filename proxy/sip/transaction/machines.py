"""The four transaction state machines of RFC 3261 §17 (with the RFC 6026 Accepted states).

Each machine is one transition table ``(state, input) -> (next state, action)``. A pair that is
not in a table is ignored (the message is absorbed / the stale timer does nothing). Actions
only talk to the layer through :class:`Effects`: transmit, arm/disarm a timer, emit an event.
Entering TERMINATED is handled by the layer (unregister, ``TransactionTerminated``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..message import Request, Response
from .builders import build_ack_for_error
from .model import (
    Address,
    ClientTransaction,
    Event,
    Input,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimerConfig,
    TransactionState,
    TransactionTimeout,
)

CALLING = TransactionState.CALLING
TRYING = TransactionState.TRYING
PROCEEDING = TransactionState.PROCEEDING
COMPLETED = TransactionState.COMPLETED
CONFIRMED = TransactionState.CONFIRMED
ACCEPTED = TransactionState.ACCEPTED
TERMINATED = TransactionState.TERMINATED

PROVISIONAL = Input.PROVISIONAL
SUCCESS = Input.SUCCESS
FAILURE = Input.FAILURE


class Effects(Protocol):
    """What an action may do to the world (implemented by the TransactionLayer)."""

    timers: TimerConfig

    # send a message, (re-)arm or disarm a transaction's timers, hand an event to the TU
    def transmit(self, message: Request | Response, dest: Address) -> None: ...

    def arm(self, txn: ClientTransaction | ServerTransaction, timer: Input, delay: float, now: float) -> None: ...

    def disarm(self, txn: ClientTransaction | ServerTransaction, *timers: Input) -> None: ...

    def emit(self, event: Event) -> None: ...

    def withdraw_trying(self, txn: ServerTransaction) -> bool: ...


ClientAction = Callable[[Effects, ClientTransaction, Input, "Response | None", float], None]
ServerAction = Callable[
    [Effects, ServerTransaction, Input, "Request | Response | None", "Address | None", float], None
]
ClientTable = dict[tuple[TransactionState, Input], tuple[TransactionState, ClientAction]]
ServerTable = dict[tuple[TransactionState, Input], tuple[TransactionState, ServerAction]]


# ============================================================================================
# Client actions
# ============================================================================================


def _c_nothing(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    pass


def _c_timeout(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    fx.emit(TransactionTimeout(txn, inp.value))


def _c_pass(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    assert msg is not None
    txn.last_response = msg
    fx.emit(ResponseReceived(msg, txn))


def _c_pass_stray(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    assert msg is not None
    fx.emit(ResponseReceived(msg, None, txn.dest))


def _ci_retransmit(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    fx.transmit(txn.request, txn.dest)
    txn.interval *= 2
    fx.arm(txn, Input.TIMER_A, txn.interval, now)


def _ci_proceeding(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    # §17.1.1.2: Timer B acts in Calling only, unless a CANCEL armed it for §9.1
    if txn.cancelled:
        fx.disarm(txn, Input.TIMER_A)
    else:
        fx.disarm(txn, Input.TIMER_A, Input.TIMER_B)
    _c_pass(fx, txn, inp, msg, now)


def _ci_accepted(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    fx.disarm(txn, Input.TIMER_A, Input.TIMER_B)
    fx.arm(txn, Input.TIMER_M, 64 * fx.timers.t1, now)
    _c_pass(fx, txn, inp, msg, now)


def _ci_retransmitted_2xx(
    fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float
) -> None:
    assert msg is not None
    ack = txn.acks.get(msg.to_tag or "")
    if ack is not None:
        fx.transmit(ack.message, ack.dest)
    _c_pass(fx, txn, inp, msg, now)


def _ci_completed(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    assert msg is not None
    fx.disarm(txn, Input.TIMER_A, Input.TIMER_B)
    ack = txn.error_ack = build_ack_for_error(txn.request, msg)
    fx.transmit(ack, txn.dest)
    # Timer D must outlast the server's retransmissions (Timer H = 64*T1): at least 32 s on UDP
    fx.arm(txn, Input.TIMER_D, 0.0 if txn.reliable else max(32.0, 64 * fx.timers.t1), now)
    _c_pass(fx, txn, inp, msg, now)


def _ci_reack(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    if txn.error_ack is not None:
        fx.transmit(txn.error_ack, txn.dest)


def _cn_retransmit(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    fx.transmit(txn.request, txn.dest)
    txn.interval = min(2 * txn.interval, fx.timers.t2)
    fx.arm(txn, Input.TIMER_E, txn.interval, now)


def _cn_retransmit_t2(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    fx.transmit(txn.request, txn.dest)
    fx.arm(txn, Input.TIMER_E, fx.timers.t2, now)


def _cn_completed(fx: Effects, txn: ClientTransaction, inp: Input, msg: Response | None, now: float) -> None:
    fx.disarm(txn, Input.TIMER_E, Input.TIMER_F)
    fx.arm(txn, Input.TIMER_K, 0.0 if txn.reliable else fx.timers.t4, now)
    _c_pass(fx, txn, inp, msg, now)


#: RFC 3261 §17.1.1 Figure 5, Calling/Proceeding/Completed, with RFC 6026 §7.2 Figure 5 Accepted.
CLIENT_INVITE: ClientTable = {
    # §17.1.1.2: Timer A retransmits the INVITE (UDP), doubling each time
    (CALLING, Input.TIMER_A): (CALLING, _ci_retransmit),
    # §17.1.1.2: Timer B fires in Calling -> inform the TU (timeout), terminate
    (CALLING, Input.TIMER_B): (TERMINATED, _c_timeout),
    # §9.1: Timer B re-armed by a CANCEL in Proceeding: no final response in 64*T1 -> timed out
    (PROCEEDING, Input.TIMER_B): (TERMINATED, _c_timeout),
    # §17.1.1.2 / §8.1.3.1: transport error before a final response -> inform the TU
    (CALLING, Input.TRANSPORT_ERROR): (TERMINATED, _c_timeout),
    (PROCEEDING, Input.TRANSPORT_ERROR): (TERMINATED, _c_timeout),
    # §17.1.1.2: provisional -> Proceeding, stop retransmitting, pass to the TU
    (CALLING, PROVISIONAL): (PROCEEDING, _ci_proceeding),
    (PROCEEDING, PROVISIONAL): (PROCEEDING, _c_pass),
    # RFC 6026 §8.4: 2xx -> Accepted, Timer M, pass to the TU (which ACKs it)
    (CALLING, SUCCESS): (ACCEPTED, _ci_accepted),
    (PROCEEDING, SUCCESS): (ACCEPTED, _ci_accepted),
    # RFC 6026 §8.4: retransmitted (or forked) 2xx in Accepted -> to the TU; re-send its ACK
    (ACCEPTED, SUCCESS): (ACCEPTED, _ci_retransmitted_2xx),
    # RFC 6026 §8.4: Timer M fires -> Terminated
    (ACCEPTED, Input.TIMER_M): (TERMINATED, _c_nothing),
    # §17.1.1.2: 300-699 -> Completed, ACK it (§17.1.1.3), Timer D, pass to the TU
    (CALLING, FAILURE): (COMPLETED, _ci_completed),
    (PROCEEDING, FAILURE): (COMPLETED, _ci_completed),
    # §17.1.1.2: retransmitted final response in Completed -> re-send the ACK, absorb it
    (COMPLETED, FAILURE): (COMPLETED, _ci_reack),
    # A 2xx after a 300-699 (a forking proxy misbehaving): the TU still ACKs + BYEs it
    (COMPLETED, SUCCESS): (COMPLETED, _c_pass_stray),
    # §17.1.1.2: Timer D fires in Completed -> Terminated
    (COMPLETED, Input.TIMER_D): (TERMINATED, _c_nothing),
}

#: RFC 3261 §17.1.2 Figure 6.
CLIENT_NON_INVITE: ClientTable = {
    # §17.1.2.2: Timer E in Trying: retransmit, interval doubles up to T2
    (TRYING, Input.TIMER_E): (TRYING, _cn_retransmit),
    # §17.1.2.2: Timer E in Proceeding: retransmit every T2
    (PROCEEDING, Input.TIMER_E): (PROCEEDING, _cn_retransmit_t2),
    # §17.1.2.2: Timer F -> inform the TU (timeout), terminate
    (TRYING, Input.TIMER_F): (TERMINATED, _c_timeout),
    (PROCEEDING, Input.TIMER_F): (TERMINATED, _c_timeout),
    # §17.1.2.2: transport error -> inform the TU, terminate
    (TRYING, Input.TRANSPORT_ERROR): (TERMINATED, _c_timeout),
    (PROCEEDING, Input.TRANSPORT_ERROR): (TERMINATED, _c_timeout),
    # §17.1.2.2: provisional -> Proceeding, pass to the TU
    (TRYING, PROVISIONAL): (PROCEEDING, _c_pass),
    (PROCEEDING, PROVISIONAL): (PROCEEDING, _c_pass),
    # §17.1.2.2: final -> Completed, Timer K, pass to the TU
    (TRYING, SUCCESS): (COMPLETED, _cn_completed),
    (TRYING, FAILURE): (COMPLETED, _cn_completed),
    (PROCEEDING, SUCCESS): (COMPLETED, _cn_completed),
    (PROCEEDING, FAILURE): (COMPLETED, _cn_completed),
    # §17.1.2.2: retransmitted responses in Completed are absorbed (absent from the table)
    # §17.1.2.2: Timer K -> Terminated
    (COMPLETED, Input.TIMER_K): (TERMINATED, _c_nothing),
}


# ============================================================================================
# Server actions
# ============================================================================================

ServerMsg = Request | Response | None


def _s_nothing(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    pass


def _s_timeout(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    fx.emit(TransactionTimeout(txn, inp.value))


def _s_resend_last(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    if txn.last_response is not None:
        fx.transmit(txn.last_response, txn.response_dest)


def _s_send(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    assert isinstance(msg, Response)
    txn.last_response = msg
    fx.transmit(msg, txn.response_dest)


def _si_accepted(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    _s_send(fx, txn, inp, msg, source, now)
    t1 = fx.timers.t1
    fx.arm(txn, Input.TIMER_L, 64 * t1, now)
    # §13.3.1.4: the 2xx is retransmitted end to end (whatever the transport) until the ACK
    txn.interval = t1
    fx.arm(txn, Input.RETRANSMIT_2XX, t1, now)


def _si_retransmit_2xx(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    if txn.last_response is not None:
        fx.transmit(txn.last_response, txn.response_dest)
    txn.interval = min(2 * txn.interval, fx.timers.t2)
    fx.arm(txn, Input.RETRANSMIT_2XX, txn.interval, now)


def _si_ack_for_2xx(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    assert isinstance(msg, Request) and source is not None
    if not txn.acked:
        txn.acked = True
        fx.disarm(txn, Input.RETRANSMIT_2XX)
    # RFC 6026 §6 / §13.3.1.4: the ACK for a 2xx belongs to the TU (it may be a retransmission)
    fx.emit(RequestReceived(msg, source, None))


def _si_timer_l(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    if not txn.acked:
        fx.emit(TransactionTimeout(txn, "L"))


def _si_completed(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    # A final answered at once (before the 100 Trying left: §17.2.1 lets a UAS that answers
    # within 200 ms skip it) reaches a UAC still in Calling, which retransmits its INVITE
    # (Timer A) until it hears the answer; Completed re-sends it on each copy. Timer G is then
    # not armed: reliability is the same, and a peer that never ACKs (a flood) draws one
    # answer per INVITE instead of eleven (docs/reliability.md, "unknown-caller flood").
    answered_at_once = not txn.reliable and fx.withdraw_trying(txn)
    _s_send(fx, txn, inp, msg, source, now)
    t1 = fx.timers.t1
    if not txn.reliable and not answered_at_once:
        txn.interval = t1
        fx.arm(txn, Input.TIMER_G, t1, now)
    fx.arm(txn, Input.TIMER_H, 64 * t1, now)


def _si_retransmit_g(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    _s_resend_last(fx, txn, inp, msg, source, now)
    txn.interval = min(2 * txn.interval, fx.timers.t2)
    fx.arm(txn, Input.TIMER_G, txn.interval, now)


def _si_confirmed(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    fx.disarm(txn, Input.TIMER_G, Input.TIMER_H)
    fx.arm(txn, Input.TIMER_I, 0.0 if txn.reliable else fx.timers.t4, now)


def _sn_completed(
    fx: Effects, txn: ServerTransaction, inp: Input, msg: ServerMsg, source: Address | None, now: float
) -> None:
    _s_send(fx, txn, inp, msg, source, now)
    fx.arm(txn, Input.TIMER_J, 0.0 if txn.reliable else 64 * fx.timers.t1, now)


#: RFC 3261 §17.2.1 Figure 7 with RFC 6026 §7.1 Figure 7 (Accepted). Inputs PROVISIONAL,
#: SUCCESS and FAILURE are responses the TU sends; REQUEST is a retransmitted INVITE.
SERVER_INVITE: ServerTable = {
    # §17.2.1: retransmitted INVITE in Proceeding -> re-send the last provisional response
    (PROCEEDING, Input.REQUEST): (PROCEEDING, _s_resend_last),
    # §17.2.1: retransmitted INVITE in Completed -> re-send the final response
    (COMPLETED, Input.REQUEST): (COMPLETED, _s_resend_last),
    # §17.2.1: absorbed in Confirmed; RFC 6026 §7.1: absorbed in Accepted (absent from the table)
    # §17.2.1: TU sends a provisional -> pass it to the transport, stay in Proceeding
    (PROCEEDING, PROVISIONAL): (PROCEEDING, _s_send),
    # RFC 6026 §7.1: TU sends a 2xx -> Accepted, Timer L; §13.3.1.4 2xx retransmission starts
    (PROCEEDING, SUCCESS): (ACCEPTED, _si_accepted),
    # RFC 6026 §7.1: further 2xx from the TU in Accepted are passed to the transport
    (ACCEPTED, SUCCESS): (ACCEPTED, _s_send),
    # §13.3.1.4: re-send the 2xx, interval doubling up to T2
    (ACCEPTED, Input.RETRANSMIT_2XX): (ACCEPTED, _si_retransmit_2xx),
    # RFC 6026 §7.1: the ACK for the 2xx goes to the TU and stops the retransmissions
    (ACCEPTED, Input.ACK): (ACCEPTED, _si_ack_for_2xx),
    # RFC 6026 §7.1: Timer L -> Terminated (TransactionTimeout "L" when no ACK came)
    (ACCEPTED, Input.TIMER_L): (TERMINATED, _si_timer_l),
    # §17.2.1: TU sends 300-699 -> Completed, Timer G (UDP), Timer H
    (PROCEEDING, FAILURE): (COMPLETED, _si_completed),
    # §17.2.1: Timer G -> re-send the final response, interval doubling up to T2
    (COMPLETED, Input.TIMER_G): (COMPLETED, _si_retransmit_g),
    # §17.2.1: Timer H -> no ACK came: inform the TU, terminate
    (COMPLETED, Input.TIMER_H): (TERMINATED, _s_timeout),
    # §17.2.1: ACK in Completed -> Confirmed, Timer I; the ACK is absorbed
    (COMPLETED, Input.ACK): (CONFIRMED, _si_confirmed),
    # §17.2.1: ACK retransmissions in Confirmed are absorbed (absent); Timer I -> Terminated
    (CONFIRMED, Input.TIMER_I): (TERMINATED, _s_nothing),
}

#: RFC 3261 §17.2.2 Figure 8.
SERVER_NON_INVITE: ServerTable = {
    # §17.2.2: retransmission in Trying is absorbed (absent); in Proceeding/Completed the
    # last response is re-sent
    (PROCEEDING, Input.REQUEST): (PROCEEDING, _s_resend_last),
    (COMPLETED, Input.REQUEST): (COMPLETED, _s_resend_last),
    # §17.2.2: TU sends a provisional -> Proceeding
    (TRYING, PROVISIONAL): (PROCEEDING, _s_send),
    (PROCEEDING, PROVISIONAL): (PROCEEDING, _s_send),
    # §17.2.2: TU sends a final response -> Completed, Timer J (64*T1 UDP, 0 reliable)
    (TRYING, SUCCESS): (COMPLETED, _sn_completed),
    (TRYING, FAILURE): (COMPLETED, _sn_completed),
    (PROCEEDING, SUCCESS): (COMPLETED, _sn_completed),
    (PROCEEDING, FAILURE): (COMPLETED, _sn_completed),
    # §17.2.2: further final responses from the TU in Completed are discarded (absent)
    # §17.2.2: Timer J -> Terminated
    (COMPLETED, Input.TIMER_J): (TERMINATED, _s_nothing),
}

__all__ = ["CLIENT_INVITE", "CLIENT_NON_INVITE", "SERVER_INVITE", "SERVER_NON_INVITE", "Effects", "Send"]
