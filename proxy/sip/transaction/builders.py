"""Requests the transaction layer derives from an INVITE: CANCEL (§9.1), ACK for 300-699 (§17.1.1.3)."""

from __future__ import annotations

from ..headers import split_list
from ..message import Headers, Request, Response


def top_via_value(headers: Headers) -> str:
    """The raw text of the topmost Via value (the first of a comma-separated first line)."""
    first = headers.get("via")
    if first is None:
        return ""
    return split_list(first)[0] if "," in first else first


def _derived(invite: Request, method: str, to_value: str) -> Request:
    h = invite.headers
    items: list[tuple[str, str]] = [("Via", top_via_value(h)), ("Max-Forwards", "70")]
    items.extend(("Route", route) for route in h.get_all("route"))
    items.append(("From", h.get("from") or ""))
    items.append(("To", to_value))
    items.append(("Call-ID", h.get("call-id") or ""))
    items.append(("CSeq", f"{invite.cseq.number} {method}"))
    return Request(method, invite.uri, Headers(items))


def build_cancel(invite: Request) -> Request:
    """RFC 3261 §9.1: same Request-URI, Call-ID, From, To and CSeq number as the INVITE, the
    method CANCEL, one Via equal to the INVITE's top Via (same branch) and its Route headers."""
    return _derived(invite, "CANCEL", invite.headers.get("to") or "")


def build_ack_for_error(invite: Request, response: Response) -> Request:
    """RFC 3261 §17.1.1.3: the ACK a client INVITE transaction sends for a 300-699: Request-URI,
    Call-ID, From and CSeq number of the INVITE, To of the response (with its tag), only the
    INVITE's top Via, and the INVITE's Route headers."""
    return _derived(invite, "ACK", response.headers.get("to") or "")
