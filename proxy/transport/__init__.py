"""asyncio (uvloop) UDP / TCP / TLS endpoints that feed parsed SIP messages upwards.

Thin adapters over the sans-IO core: framing, 400 for unparsable requests and keep-alives are
the only protocol work done here.
"""

from .address import Address
from .loop import install_event_loop_policy
from .stats import TransportStats
from .tls import make_client_context, make_server_context
from .transports import SipTransports

__all__ = [
    "Address",
    "SipTransports",
    "TransportStats",
    "install_event_loop_policy",
    "make_client_context",
    "make_server_context",
]
