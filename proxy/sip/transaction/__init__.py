"""RFC 3261 §17 transactions (with RFC 6026), sans-IO.

``model`` holds the values (addresses, timer settings, states, transactions, events),
``machines`` the four transition tables, ``layer`` the :class:`TransactionLayer` that matches
messages to transactions and drives the machines, ``builders`` the CANCEL and ACK builders.
"""

from .builders import build_ack_for_error, build_cancel
from .layer import TransactionLayer
from .model import (
    Address,
    ClientTransaction,
    Event,
    Input,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TimerConfig,
    Transaction,
    TransactionState,
    TransactionTerminated,
    TransactionTimeout,
)

__all__ = [
    "Address",
    "ClientTransaction",
    "Event",
    "Input",
    "MessageRejected",
    "RequestReceived",
    "ResponseReceived",
    "Send",
    "ServerTransaction",
    "TimerConfig",
    "Transaction",
    "TransactionLayer",
    "TransactionState",
    "TransactionTerminated",
    "TransactionTimeout",
    "build_ack_for_error",
    "build_cancel",
]
