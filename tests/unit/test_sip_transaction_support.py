"""Shared helpers for the transaction tests, plus tests of ids and the CANCEL/ACK builders."""

from __future__ import annotations

import random

from proxy.sip.ids import MAGIC_COOKIE, SecretIds, SequentialIds
from proxy.sip.message import Request, Response, build_response
from proxy.sip.parser import parse_message
from proxy.sip.transaction import (
    Address,
    Event,
    Send,
    TimerConfig,
    TransactionLayer,
    build_ack_for_error,
    build_cancel,
)

PEER_UDP = Address("udp", "192.0.2.10", 5060)
PEER_TCP = Address("tcp", "192.0.2.10", 40312)
OTHER_UDP = Address("udp", "198.51.100.7", 5060)


def make_layer(t1: float = 0.5, t2: float = 4.0, t4: float = 5.0, *, auto_trying: bool = True) -> TransactionLayer:
    return TransactionLayer(TimerConfig(t1, t2, t4), SequentialIds("s"), auto_trying=auto_trying)


def make_request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bK-1",
    sent_by: str = "192.0.2.10:5060",
    transport: str = "UDP",
    via_params: str = "",
    extra_via: tuple[str, ...] = (),
    to_tag: str | None = None,
    from_tag: str = "a1",
    call_id: str = "c1@192.0.2.10",
    cseq: int = 1,
    cseq_method: str | None = None,
    uri: str = "sip:+15550001@sipmask.example",
    extra: tuple[str, ...] = (),
) -> Request:
    """A request as parsed from the wire (parse_message), so lazily parsed headers behave as live."""
    branch_param = f";branch={branch}" if branch is not None else ""
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {sent_by}{branch_param}{via_params}",
        *extra_via,
        "Max-Forwards: 70",
        f"From: \"Alice\" <sip:alice@example.com>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@192.0.2.10:5060>",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    msg = parse_message("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def wire(message: Request | Response) -> Request | Response:
    """Serialise and parse again: what the peer would receive."""
    return parse_message(message.serialise())


def reply(request: Request, status: int, to_tag: str | None = "b1") -> Response:
    """The peer's response to a request we sent, as received off the wire."""
    msg = wire(build_response(request, status, to_tag=to_tag))
    assert isinstance(msg, Response)
    return msg


def methods_or_statuses(sends: list[Send]) -> list[str | int]:
    return [s.message.method if isinstance(s.message, Request) else s.message.status for s in sends]


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, list[Send], list[Event]]]:
    """Advance the fake clock deadline by deadline up to ``end``; record (time, sent, events)."""
    log: list[tuple[float, list[Send], list[Event]]] = []
    while True:
        deadline = layer.next_deadline()
        if deadline is None or deadline > end:
            return log
        events = layer.handle_timers(deadline)
        log.append((deadline, layer.take_outgoing(), list(events)))


# ---------------------------------------------------------------------------- ids


def test_8_1_1_7_sequential_branches_carry_magic_cookie() -> None:
    ids = SequentialIds("x")
    b1, b2 = ids.branch(), ids.branch()
    assert b1.startswith(MAGIC_COOKIE) and b2.startswith(MAGIC_COOKIE) and b1 != b2
    assert ids.tag() != ids.tag()
    assert ids.call_id() != ids.call_id()
    assert SequentialIds("x").branch() == b1  # deterministic


def test_secret_ids_draw_entropy_in_chunks_and_never_reuse_it() -> None:
    calls: list[int] = []
    rng = random.Random(7)

    def source(n: int) -> bytes:
        calls.append(n)
        return rng.randbytes(n)

    ids = SecretIds(source)
    branch, tag, call_id = ids.branch(), ids.tag(), ids.call_id()
    assert len(calls) == 1, "one entropy read serves many ids"
    assert branch.startswith(MAGIC_COOKIE) and len(branch) == len(MAGIC_COOKIE) + 20
    assert len(tag) == 16 and len(call_id) == 32
    assert all(c in "0123456789abcdef" for c in branch[len(MAGIC_COOKIE):] + tag + call_id)
    # every id uses fresh bytes: 2000 ids cross several chunk boundaries without a repeat
    many = [ids.tag() for _ in range(2000)]
    assert len(set(many)) == len(many)
    assert len(calls) > 1 and all(n == calls[0] for n in calls)


# ---------------------------------------------------------------------------- builders


def _header_list(request: Request) -> list[tuple[str, str]]:
    return [(n.lower(), v) for n, v in request.headers if n.lower() != "content-length"]


def test_17_1_1_3_ack_for_error_built_header_by_header() -> None:
    invite = make_request(
        extra_via=("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-lower",),
        extra=("Route: <sip:p1.example.com;lr>", "Route: <sip:p2.example.com;lr>", "Subject: hi"),
    )
    response = reply(invite, 486, to_tag="callee-tag")
    ack = build_ack_for_error(invite, response)
    assert ack.method == "ACK" and ack.uri == invite.uri
    assert _header_list(ack) == [
        ("via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1"),  # only the top Via
        ("max-forwards", "70"),
        ("route", "<sip:p1.example.com;lr>"),
        ("route", "<sip:p2.example.com;lr>"),
        ("from", '"Alice" <sip:alice@example.com>;tag=a1'),
        ("to", "<sip:bob@example.com>;tag=callee-tag"),  # To of the response
        ("call-id", "c1@192.0.2.10"),
        ("cseq", "1 ACK"),
    ]
    assert ack.branch == invite.branch


def test_9_1_cancel_built_header_by_header() -> None:
    invite = make_request(
        cseq=42,
        extra_via=("Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-lower",),
        extra=("Route: <sip:p1.example.com;lr>",),
    )
    cancel = build_cancel(invite)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert _header_list(cancel) == [
        ("via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1"),
        ("max-forwards", "70"),
        ("route", "<sip:p1.example.com;lr>"),
        ("from", '"Alice" <sip:alice@example.com>;tag=a1'),
        ("to", "<sip:bob@example.com>"),
        ("call-id", "c1@192.0.2.10"),
        ("cseq", "42 CANCEL"),
    ]
    # it round-trips through the parser
    assert isinstance(wire(cancel), Request)
