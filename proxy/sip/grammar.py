"""The character sets of the SIP grammar (RFC 3261 §25.1), written once.

Each set sits under the ABNF rule it encodes, in the manner of h11's ``_abnf.py``. They are
frozensets, checked with ``frozenset.issuperset(text)``: the parser runs for every message, and
a set test is cheaper than a regular expression.

Core rules (RFC 2234 / RFC 5234 Appendix B.1)::

    ALPHA   =  %x41-5A / %x61-7A   ; A-Z / a-z
    DIGIT   =  %x30-39             ; 0-9
    HEXDIG  =  DIGIT / "A" / "B" / "C" / "D" / "E" / "F"   ; case-insensitive
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "HOST_CHARS",
    "IPV6_CHARS",
    "KNOWN_METHODS",
    "TOKEN_CHARS",
    "is_token",
]

_ALPHA: Final = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT: Final = "0123456789"
_HEXDIG: Final = "0123456789abcdefABCDEF"

# RFC 3261 §25.1:
#     alphanum  =  ALPHA / DIGIT
#     token     =  1*(alphanum / "-" / "." / "!" / "%" / "*"
#                  / "_" / "+" / "`" / "'" / "~" )
TOKEN_CHARS: Final = frozenset(_ALPHA + _DIGIT + "-.!%*_+`'~")
"""The characters of a ``token``: header names, methods, transports, parameter names."""


def is_token(text: str) -> bool:
    """Whether *text* is a ``token`` (RFC 3261 §25.1): one or more :data:`TOKEN_CHARS`."""
    return bool(text) and TOKEN_CHARS.issuperset(text)


# RFC 3261 §25.1 (IPv4 written in an IPv6 reference's last 32 bits):
#     IPv6address  =  hexpart [ ":" IPv4address ]
#     hexpart      =  hexseq / hexseq "::" [ hexseq ] / "::" [ hexseq ]
#     hexseq       =  hex4 *( ":" hex4)
#     hex4         =  1*4HEXDIG
#     IPv4address  =  1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
IPV6_CHARS: Final = frozenset(_HEXDIG + ":.")
"""The characters of an ``IPv6address`` (the text between an IPv6 reference's brackets)."""

# RFC 3261 §25.1:
#     host         =  hostname / IPv4address / IPv6reference
#     hostname     =  *( domainlabel "." ) toplabel [ "." ]
#     domainlabel  =  alphanum / alphanum *( alphanum / "-" ) alphanum
#     toplabel     =  ALPHA / ALPHA *( alphanum / "-" ) alphanum
# plus "_", which real DNS names carry (SRV-style labels, some carriers' host names).
HOST_CHARS: Final = frozenset(_ALPHA + _DIGIT + "-._")
"""The characters of a ``hostname`` or ``IPv4address`` (and "_"); label structure unchecked."""

# RFC 3261 §25.1:
#     Method            =  INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm
#                          / extension-method
#     extension-method  =  token
# The extension methods registered by RFC 3262 (PRACK), RFC 3311 (UPDATE), RFC 6086 (INFO),
# RFC 3515 (REFER), RFC 3428 (MESSAGE), RFC 6665 (SUBSCRIBE, NOTIFY), RFC 3903 (PUBLISH).
KNOWN_METHODS: Final = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
     "REFER", "MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH")
)
"""Methods seen every day: one set lookup before the ``token`` check of any other method."""
