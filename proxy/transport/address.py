"""Where a SIP message comes from or goes to.

The transaction layer owns :class:`Address` (``proxy.sip.transaction``); the transports use the
very same class so that the sources they report compare and hash equal to the addresses the
transaction layer keeps. Re-exported here for callers of the transport package.
"""

from __future__ import annotations

from proxy.sip.transaction import Address

__all__ = ["Address"]
