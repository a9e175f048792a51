"""Values of the transaction layer: addresses, timer settings, states, inputs, transactions, events.

:class:`Send` and the events are read-only by convention, not frozen: a frozen dataclass's
``__init__`` sets each field through ``object.__setattr__``, and the layer builds about twenty
of them per call.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..message import Request, Response

if TYPE_CHECKING:
    from .timers import ArmedTimer


class Address(NamedTuple):
    """Where a message came from or goes to. ``transport`` is ``"udp"``, ``"tcp"`` or ``"tls"``.

    A named tuple rather than a frozen dataclass: built for messages received and held by
    every transaction, and cheaper to build and compare. (Unlike a plain tuple, a named tuple
    stays tracked by the cyclic GC: the UDP transport shares one per peer address.)"""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: TCP/TLS are reliable; only UDP needs retransmissions."""
        return self.transport != "udp"


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 / Table 4: T1 (RTT estimate), T2 (max non-INVITE interval), T4."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0


@dataclass(slots=True)
class Send:
    """A message the transport must send to ``dest``."""

    message: Request | Response
    dest: Address


class TransactionState(enum.Enum):
    """States of the four machines (RFC 3261 §17 Figures 5-8, RFC 6026 Figures 5 and 7)."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"

    #: members are singletons compared by identity: hash them in C (``Enum.__hash__`` is a
    #: Python function, and the machines hash a (state, input) pair for every transition)
    __hash__ = object.__hash__


@enum.unique
class Input(enum.Enum):
    """What drives a machine: a response class, a request, a timer (value = its RFC letter)
    or a transport error."""

    PROVISIONAL = "1xx"
    SUCCESS = "2xx"
    FAILURE = "300-699"
    REQUEST = "request"  # server: retransmission of the request that created the transaction
    ACK = "ACK"  # server INVITE: ACK matched to the transaction
    TRANSPORT_ERROR = "transport"
    TIMER_A = "A"
    TIMER_B = "B"
    TIMER_D = "D"
    TIMER_E = "E"
    TIMER_F = "F"
    TIMER_G = "G"
    TIMER_H = "H"
    TIMER_I = "I"
    TIMER_J = "J"
    TIMER_K = "K"
    TIMER_L = "L"
    TIMER_M = "M"
    #: RFC 3261 §13.3.1.4: the UAS re-sends its 2xx (T1 doubling, capped at T2) until the ACK
    RETRANSMIT_2XX = "2xx retransmission"

    __hash__ = object.__hash__  # as TransactionState: identity hash, in C


def response_input(status: int) -> Input:
    """The machine input for a response status."""
    if status < 200:
        return Input.PROVISIONAL
    if status < 300:
        return Input.SUCCESS
    return Input.FAILURE


class Transaction:
    """Common part of client and server transactions."""

    __slots__ = (
        "request", "branch", "method", "is_invite", "state", "last_response", "tu_data",
        "reliable", "armed", "interval", "key",
    )

    def __init__(self, request: Request, branch: str, reliable: bool, state: TransactionState) -> None:
        self.request = request
        self.branch = branch
        self.method = request.method
        self.is_invite = request.method == "INVITE"
        self.state = state
        #: server: the last response sent (re-sent on retransmissions); client: the last one
        #: received, until the transaction lingers (then None: it was passed to the TU)
        self.last_response: Response | None = None
        #: a free slot for the transaction user (the B2BUA keeps its leg/call here)
        self.tu_data: Any = None
        self.reliable = reliable
        #: armed timers: input -> its entry in the layer's timer queues
        self.armed: dict[Input, ArmedTimer] = {}
        #: current retransmission interval of Timer A / E / G / the 2xx retransmission
        self.interval = 0.0
        #: the layer's matching key (§17.1.3 / §17.2.3), to unregister the transaction
        self.key: tuple[object, ...] = ()


class ClientTransaction(Transaction):
    """RFC 3261 §17.1: a request we sent and the responses to it."""

    __slots__ = ("dest", "acks", "error_ack", "cancelled")

    def __init__(self, request: Request, branch: str, dest: Address, state: TransactionState) -> None:
        super().__init__(request, branch, dest.transport != "udp", state)
        self.dest = dest
        #: RFC 6026: the TU's ACK for each 2xx, by To tag, re-sent on every retransmitted 2xx
        self.acks: dict[str, Send] = {}
        #: §17.1.1.3: the ACK the layer built for a 300-699 response
        self.error_ack: Request | None = None
        #: an INVITE the TU sent a CANCEL for: its Timer B then runs in Proceeding too (§9.1)
        self.cancelled = False

    def __repr__(self) -> str:
        return f"<ClientTransaction {self.method} {self.branch} {self.state.name}>"


class ServerTransaction(Transaction):
    """RFC 3261 §17.2: a request we received and the responses we send to it."""

    __slots__ = ("source", "response_dest", "acked", "merge_key", "ack_key", "received_at")

    def __init__(
        self,
        request: Request,
        branch: str,
        source: Address,
        response_dest: Address,
        state: TransactionState,
    ) -> None:
        super().__init__(request, branch, source.transport != "udp", state)
        self.source = source
        #: §18.2.2: where responses go (the connection, or received/rport of the top Via)
        self.response_dest = response_dest
        #: RFC 6026: an ACK for our 2xx has arrived (stops 2xx retransmissions, no Timer L alarm)
        self.acked = False
        #: the layer's keys for merged requests (§8.2.2.2) and for the ACK of a 2xx (RFC 6026)
        self.merge_key: tuple[object, ...] | None = None
        self.ack_key: tuple[object, ...] | None = None
        #: when the layer handled the request (and, for an INVITE, sent 100 Trying)
        self.received_at = 0.0

    def __repr__(self) -> str:
        return f"<ServerTransaction {self.method} {self.branch} {self.state.name}>"


# -- events (what receive() / handle_timers() / transport_error() return) ---------------------


@dataclass(slots=True)
class RequestReceived:
    """A new request for the TU. ``transaction`` is None for an ACK to a 2xx (§13.3.1.4,
    RFC 6026 §6); for a CANCEL, ``cancelled`` is the INVITE server transaction it matches
    (§9.2), or None."""

    request: Request
    source: Address
    transaction: ServerTransaction | None
    cancelled: ServerTransaction | None = None


@dataclass(slots=True)
class ResponseReceived:
    """A response for the TU. ``transaction`` is None for a 2xx to an INVITE whose client
    transaction is gone or already finished by a 300-699 (§13.2.2.4: the TU re-sends its ACK,
    or ACKs and releases a dialog it does not know); ``source`` then says where it came from
    (the address the TU answers it at), else it is None."""

    response: Response
    transaction: ClientTransaction | None
    source: Address | None = None


@dataclass(slots=True)
class TransactionTimeout:
    """A transaction failed: ``timer`` is "B"/"F" (client: act as on a 408, §8.1.3.1),
    "transport" (client: the transport could not send), "H" (server INVITE: no ACK for a
    300-699) or "L" (server INVITE: no ACK for a 2xx; the TU should send BYE, §13.3.1.4)."""

    transaction: ClientTransaction | ServerTransaction
    timer: str


@dataclass(slots=True)
class TransactionTerminated:
    """The transaction is freed; the TU drops its references to it."""

    transaction: ClientTransaction | ServerTransaction


@dataclass(slots=True)
class MessageRejected:
    """A malformed message: a request answered with 400 (or dropped), a response dropped."""

    reason: str
    source: Address


Event = RequestReceived | ResponseReceived | TransactionTimeout | TransactionTerminated | MessageRejected
