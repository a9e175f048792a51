"""Outbound HTTP: the lookup hook (`LookupHook`, asked where to send an unknown caller), the
event webhooks (`WebhookSink`) and the HMAC signature both put on their requests (`signing`).

This package sits beside `b2bua`: it may import `pairing`, `observability` and `config`;
nothing below it (`pairing`, `observability`, `sip`) imports it. The B2BUA sees the hook and
the sink only through the callables `app.py` hands it.
"""

from .hook import HOOK_SESSION_ID, MISSING, LookupHook, Missing
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from .webhooks import EVENT_TYPES, EndpointSpec, WebhookSink, cdr_payload

__all__ = [
    "EVENT_TYPES",
    "HOOK_SESSION_ID",
    "MISSING",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "EndpointSpec",
    "LookupHook",
    "Missing",
    "WebhookSink",
    "cdr_payload",
    "sign",
    "verify",
]
