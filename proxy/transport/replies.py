"""The one reply the transports send on their own: 4xx/5xx for a message that did not parse."""

from __future__ import annotations

import secrets

from proxy.sip.errors import SipParseError
from proxy.sip.message import Request, build_response
from proxy.sip.parser import parse_message

__all__ = ["error_reply", "stream_head_reply"]

_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")


def error_reply(exc: SipParseError) -> bytes | None:
    """The wire form of ``<exc.status> <exc.reason>`` answering ``exc.partial``, or None.

    RFC 3261 §8.2.6 builds a response from the request's Via, From, To, Call-ID and CSeq, so a
    reply is possible only when the partial message is a request that has all five; an ACK is
    never answered (§17.2.1), whether its request line or its CSeq says so. The To tag is
    added as §8.2.6.2 requires of any UAS response.
    """
    partial = exc.partial
    if not isinstance(partial, Request) or partial.method == "ACK":
        return None
    headers = partial.headers
    for name in _MANDATORY:
        if name not in headers:
            return None
    cseq = headers.get("cseq") or ""
    if cseq.rpartition(" ")[2].upper() == "ACK":
        return None  # an ACK whose request line is unreadable: still never answered
    try:
        response = build_response(partial, exc.status, exc.reason, to_tag=secrets.token_hex(6))
        wire = response.serialise()
        # the copied lines may be the broken ones (two From, a malformed CSeq): a reply that
        # would not parse is not sent, sipmask never emits a malformed message
        parse_message(wire)
    except Exception:  # noqa: BLE001 - a header too broken to copy: nothing sensible to answer
        return None
    return wire


def stream_head_reply(exc: SipParseError, buffered: bytes) -> bytes | None:
    """A reply to a stream framing error (no Content-Length, too large), built from the head.

    The framer raises without a partial message; the header block still waiting in its buffer
    is parsed as a datagram would be, only to copy the five headers a response needs.
    """
    end = buffered.find(b"\r\n\r\n")
    if end < 0:
        return None
    partial: object
    try:
        # no Content-Length: parses (as a datagram would); too large: raises with the partial
        partial = parse_message(buffered[: end + 4], stream=False)
    except SipParseError as head_exc:
        partial = head_exc.partial
    except Exception:  # noqa: BLE001 - building a reply to garbage must never raise into the transport
        return None
    return error_reply(SipParseError(exc.reason, exc.status, partial))
