"""Out-of-dialog MESSAGE (proxy/b2bua/message.py), masked through the sessions."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.pairing.model import Participant
from proxy.sip.message import Request, Response

from .b2bua_harness import (
    CALLEE,
    CALLEE_V,
    CALLER,
    CALLER_V,
    GW1,
    A,
    Harness,
    invite,
    message_request,
    only,
    response_to,
)


@pytest.fixture()
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_message_is_masked_through_the_session_and_answered(h: Harness) -> None:
    out = h.feed(message_request(extra=f"User-Agent: Phone-{CALLER}\n"), A)
    (b_msg, dest), = only(out, Request, method="MESSAGE")
    assert dest == GW1
    assert b_msg.request_uri.user == CALLEE and b_msg.from_.sip_uri().user == CALLEE_V
    wire = b_msg.serialise()
    assert CALLER.encode() not in wire and b"127.0.0.2" not in wire and b"msg-1" not in wire
    assert b_msg.body == b"running 5 min late" and b_msg.headers.get("content-type") == "text/plain"
    out = h.feed(response_to(b_msg, 202, "Accepted", extra=f"Server: PBX-{CALLEE}\n"), GW1)
    (ok, dest), = only(out, Response)
    assert (ok.status, dest) == (202, A)
    assert CALLEE.encode() not in ok.serialise() and b"127.0.0.3" not in ok.serialise()


def test_message_from_unknown_caller_gets_the_uniform_answer(h: Harness) -> None:
    out = h.feed(message_request(frm="+15550000000"), A)
    assert [m.status for m, _ in only(out, Response)] == [404]
    assert not only(out, Request)


def test_message_to_a_silent_gateway_gets_408(h: Harness) -> None:
    h.feed(message_request(), A)
    out = h.advance(40)
    assert 408 in [m.status for m, d in only(out, Response) if d == A]


def test_message_only_session_carries_messages_but_not_calls(h: Harness) -> None:
    h.store.close_session(h.session.id, now=h.now)
    h.store.create_session(Participant(CALLER, CALLER_V), Participant(CALLEE, CALLEE_V),
                           mode="message", now=h.now)
    h.service.poll()
    out = h.feed(invite(), A)
    assert [m.status for m, _ in only(out, Response) if m.status >= 200] == [404]
    assert not only(out, Request)
    out = h.feed(message_request(), A)
    assert only(out, Request, method="MESSAGE")
