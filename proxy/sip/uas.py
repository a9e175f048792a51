"""The checks a UAS makes of a request before its method's own processing (RFC 3261 §8.2.2):
the Request-URI's scheme (§8.2.2.1, 416) and the extensions the request requires (§8.2.2.3,
420 with Unsupported). sipmask is the UAS of every request it receives (a B2BUA), so an
unknown scheme or a required extension it does not carry end to end is answered here, never
relayed to the callee."""

from __future__ import annotations

from typing import Final

from .message import Request

__all__ = ["KNOWN_SCHEMES", "SUPPORTED_OPTION_TAGS", "uas_refusal", "unsupported_tags"]

#: URI schemes a Request-URI may have (§19.1 sip/sips, RFC 3966 tel)
KNOWN_SCHEMES: Final = frozenset(("sip", "sips", "tel"))

#: option tags (§19.2) sipmask supports end to end, so that a ``Require`` naming them is
#: honoured: ``100rel`` (RFC 3262: reliable provisionals and PRACK are relayed, RAck mapped
#: per leg) and ``timer`` (RFC 4028: Session-Expires and refreshes pass end to end, and the
#: B2BUA releases both legs when a session expires). docs/architecture.md lists them.
SUPPORTED_OPTION_TAGS: Final = frozenset(("100rel", "timer"))

#: §8.2.2.3: Require is not checked for these ("processing of ... ACK and CANCEL")
_NO_REQUIRE_CHECK: Final = frozenset(("ACK", "CANCEL"))


def unsupported_tags(request: Request) -> list[str]:
    """The option tags of ``request``'s Require and Proxy-Require that sipmask does not
    support, as written, in order, each once. Proxy-Require is checked too: sipmask is the
    last element that could honour it on the caller's side, and it is not relayed."""
    unknown: list[str] = []
    headers = request.headers
    for name in ("require", "proxy-require"):
        for tag in headers.values(name):
            if tag and tag.lower() not in SUPPORTED_OPTION_TAGS and tag not in unknown:
                unknown.append(tag)
    return unknown


def uas_refusal(request: Request) -> tuple[int, list[tuple[str, str]]] | None:
    """The final status (and its extra header lines) a UAS must answer ``request`` with before
    processing it, or None to go on. Not for ACK (never answered)."""
    uri = request.uri
    if uri[:4] != "sip:" and uri.partition(":")[0].lower() not in KNOWN_SCHEMES:
        # §8.2.2.1: "If the Request-URI uses a scheme not supported by the UAS, it SHOULD
        # reject the request with a 416 (Unsupported URI Scheme) response"
        return 416, []
    keys = request.headers.columns()[1]
    if ("require" in keys or "proxy-require" in keys) and request.method not in _NO_REQUIRE_CHECK:
        unknown = unsupported_tags(request)
        if unknown:
            # §8.2.2.3: "the UAS MUST respond by generating a response with a status code of
            # 420 (Bad Extension). The UAS MUST add an Unsupported header field"
            return 420, [("Unsupported", ", ".join(unknown))]
    return None
