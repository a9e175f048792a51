"""The transaction user: calls as an A leg and a B leg (``b2bua``, built from the flows in
``invite``, ``in_dialog``, ``media``, ``message`` and ``teardown`` over ``base``), the per-call state
(``call``), admission under overload (``overload``), the header policy (``policy``) and the
B2BUA's own timers (``timers``)."""

from .b2bua import B2bua
from .base import MediaControl, PairingLookup, UnknownLookup
from .call import Call, CallState, Leg, TransactionData
from .overload import Admission
from .policy import (
    HeaderPolicy,
    Rules,
    RulesError,
    SdpPolicy,
    default_rules,
    load_rules,
)
from .timers import TimerHandle, TimerHeap

__all__ = [
    "Admission",
    "B2bua",
    "Call",
    "CallState",
    "HeaderPolicy",
    "Leg",
    "MediaControl",
    "PairingLookup",
    "Rules",
    "RulesError",
    "SdpPolicy",
    "TimerHandle",
    "TimerHeap",
    "TransactionData",
    "UnknownLookup",
    "default_rules",
    "load_rules",
]
