"""Media through rtpengine: the ng protocol client (``ng``: bencoded dictionaries over UDP,
cookies, retries, failover between weighted rtpengines) and the B2BUA's media relay on top of
it (``bridge``: offer/answer/delete as tasks, results handed back to the sans-IO B2BUA).

Sits beside ``integrations``: it may import ``config`` and ``observability``; the B2BUA sees it
only through its ``MediaControl`` protocol, and ``app`` wires the two together.
"""

from .bridge import PRIVACY_OPTIONS, MediaBridge
from .ng import Engine, NgClient, NgError, NgUnavailable

__all__ = ["PRIVACY_OPTIONS", "Engine", "MediaBridge", "NgClient", "NgError", "NgUnavailable"]
