"""The one place a message body crosses legs: every INVITE offer, 18x/2xx answer, ACK
answer, re-INVITE, UPDATE, PRACK and their answers goes through :func:`cross_body`.

By Content-Type (``proxy/rules/default.toml`` ``[sdp]`` and ``[bodies]``):

- ``application/sdp``: validated and rebuilt from the SDP whitelist;
- ``multipart/*``: its one SDP part, rebuilt, is sent on as ``application/sdp`` and the
  other parts are dropped (or the body is refused: ``bodies.multipart = "refuse"``);
- a type in ``bodies.pass_types`` (SIP INFO DTMF): unchanged;
- anything else: dropped with its Content-Type (or refused: ``bodies.other = "refuse"``);
- a body without a Content-Type, or one that does not parse: refused.

A refusal says what to answer a request with (RFC 3261 §21.4.1 400 for a body that does not
parse, since it is malformed syntax; §21.4.13 415 + Accept for a type or encoding refused by
rule); for a response or an ACK the flow ends the call instead, and answers the caller 488
(§21.4.26: the callee's session description is not acceptable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ..sip.body import BodyError, media_type, multipart_parts
from ..sip.sdp import SdpError, rebuild_sdp

if TYPE_CHECKING:
    from ..sip.message import Headers, Request, Response
    from .policy import Rules

__all__ = ["KEEP", "Refusal", "apply_body", "cross_body"]

KEEP: Final = "keep"
"""``cross_body``'s content type when the copied Content-Type still holds (application/sdp)."""

_ACCEPT: Final = (("Accept", "application/sdp"),)
#: headers that describe the body as it came; removed when the body is replaced or dropped
_DESCRIBING: Final = ("Content-Type", "Content-Disposition", "Content-Encoding", "Content-Language")


@dataclass(frozen=True, slots=True)
class Refusal:
    """A body that must not cross: what to answer a request with, and the counter to raise.
    ``reason`` names no byte of the body."""

    status: int
    reason: str
    counter: str
    extra: tuple[tuple[str, str], ...] = ()


def cross_body(headers: Headers, body: bytes, rules: Rules, origin_address: str | None,
               id_key: bytes) -> tuple[bytes, str] | Refusal:
    """``(body to send, its Content-Type)`` for a non-empty ``body`` received with
    ``headers``, or the :class:`Refusal`. The Content-Type is :data:`KEEP` when the received
    one still describes the body, ``""`` when the body is dropped."""
    ctype = headers.get("content-type")
    if ctype is None or not ctype.strip():
        return Refusal(400, "Body Without Content-Type", "body_no_type")
    encoding = headers.get("content-encoding")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        return Refusal(415, "Unsupported Content-Encoding", "body_refused", (("Accept-Encoding", "identity"),))
    # the common spelling needs no parsing of parameters
    kind, boundary = ("application/sdp", None) if ctype == "application/sdp" else media_type(ctype)
    sdp = rules.sdp
    if kind == "application/sdp":
        try:
            rebuilt = rebuild_sdp(body, sdp.whitelist, origin_address=origin_address, id_key=id_key)
        except SdpError as exc:
            return Refusal(400, f"Bad SDP ({exc.reason})", "bad_sdp")
        # a Content-Type with parameters is written anew: parameters are free text
        return (rebuilt if sdp.sanitise else body), KEEP if ctype == kind else kind
    policy = rules.bodies
    if kind.startswith("multipart/"):
        if policy.multipart == "refuse":
            return Refusal(415, "Multipart Body Not Accepted", "body_refused", _ACCEPT)
        try:
            parts = multipart_parts(boundary, body)
        except BodyError as exc:
            return Refusal(400, f"Bad Multipart Body ({exc.reason})", "bad_body")
        sdp_parts = [content for part_kind, content in parts if part_kind == "application/sdp"]
        if len(sdp_parts) > 1:
            return Refusal(415, "More Than One SDP Part", "body_refused", _ACCEPT)
        if sdp_parts:
            try:
                rebuilt = rebuild_sdp(sdp_parts[0], sdp.whitelist, origin_address=origin_address, id_key=id_key)
            except SdpError as exc:
                return Refusal(400, f"Bad SDP ({exc.reason})", "bad_sdp")
            return (rebuilt if sdp.sanitise else sdp_parts[0]), "application/sdp"
    elif kind in policy.pass_types:
        return body, KEEP if ctype == kind else kind
    if policy.other == "refuse":
        return Refusal(415, "Body Type Not Accepted", "body_refused", _ACCEPT)
    return b"", ""


def apply_body(out: Request | Response, crossed: tuple[bytes, str]) -> None:
    """Put a crossed body on ``out`` (its headers already copied by the header policy), with
    the Content-Type it needs; Content-Length is always computed when it is serialised."""
    body, kind = crossed
    out.body = body
    if kind == KEEP:
        return
    headers = out.headers
    for name in _DESCRIBING:
        headers.remove(name)
    if kind:
        headers.add("Content-Type", kind)
