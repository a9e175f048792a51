"""Bodies across legs: every message kind that carries SDP goes through the one policy
(rebuilt from the whitelist, bad ones refused), in both directions."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from proxy.b2bua import default_rules
from proxy.b2bua.policy import BodyPolicy
from proxy.sip.message import Request, Response

from .b2bua_harness import (
    CALLEE,
    CALLER,
    GW1,
    A,
    Harness,
    a_tag,
    answered_call,
    in_dialog_request,
    invite,
    only,
    response_to,
)

CALLER_DIGITS = CALLER.lstrip("+")
CALLEE_DIGITS = CALLEE.lstrip("+")


def dirty_sdp(number: str, o_user: str | None = None) -> str:
    """An SDP as softphones send it: the party's number in o=, s=, i=, a=ssrc cname and a=tool."""
    return (
        "v=0\n"
        f"o={o_user or number}  2890844526 2890842807 IN IP4 198.51.100.7\n"
        f"s={number}\n"
        f"i=call from tel:{number}\n"
        "c=IN IP4 198.51.100.7\n"
        "t=0 0\n"
        f"a=tool:baresip {number.lstrip('+')}\n"
        "m=audio 49170 RTP/AVP 0 101\n"
        "a=rtpmap:0 PCMU/8000\n"
        "a=rtpmap:101 telephone-event/8000\n"
        f"a=ssrc:1234 cname:sip:{number}@198.51.100.7\n"
        f"a=label:{number.lstrip('+')}\n"
        "a=sendrecv\n"
    )


BAD_SDP = "v=0\no=- 1 1 IN IP4 h\ns=-\nc= IP4 198.51.100.7\nt=0 0\nm=audio 1 RTP/AVP 0\na=:0 PCMU/8000\n"


def with_body(raw: str, body: str, ctype: str | None = "application/sdp") -> str:
    """``raw`` (a harness message, its lines "\\n"-separated) with ``body`` instead of its own;
    the harness turns every "\\n" into CRLF, so the length counts CRLFs."""
    head = raw[: raw.index("Content-Type:")] if "Content-Type:" in raw else raw[: raw.index("Content-Length:")]
    ctype_line = f"Content-Type: {ctype}\n" if ctype is not None else ""
    return f"{head}{ctype_line}Content-Length: {len(body.replace(chr(10), chr(13) + chr(10)))}\n\n{body}"


def multipart(sdp: str, text: str) -> str:
    return (f"--b1\nContent-Type: application/sdp\n\n{sdp}\n--b1\nContent-Type: text/plain\n\n{text}\n"
            "--b1\nContent-Type: application/isup;version=itu-t92+\n\n" + CALLER + "\n--b1--\n")


def assert_clean(message: Request | Response, *numbers: str) -> None:
    """No number in any spelling, no a=tool/a=ssrc/a=label/i=, a rebuilt o=/s= in the bytes."""
    raw = message.serialise()
    for number in numbers:
        digits = number.lstrip("+").encode()
        assert digits not in raw and digits[1:] not in raw, raw
    for marker in (b"a=tool", b"a=ssrc", b"a=label", b"\r\ni=", b"text/plain", b"isup"):
        assert marker not in raw, (marker, raw)
    if message.body:
        assert message.body.startswith(b"v=0\r\no=- 2890844526 2890842807 IN IP4 127.0.0.1\r\ns=-\r\n")
        assert message.headers.get("content-type") == "application/sdp"
        assert int(message.headers.get("content-length") or 0) == len(message.body)


def b_invite_of(out: list[tuple[Request | Response, object]]) -> Request:
    found = only(out, Request, method="INVITE")  # type: ignore[arg-type]
    assert found, "the call is bridged"
    message = found[0][0]
    assert isinstance(message, Request)
    return message


def test_invite_offer_rebuilt(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    b_inv = b_invite_of(h.feed(with_body(invite(), dirty_sdp(CALLER)), A))
    assert_clean(b_inv, CALLER)
    assert b"m=audio 49170 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n" in b_inv.body  # media crosses


def test_invite_multipart_keeps_only_the_sdp_part(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    body = multipart(dirty_sdp(CALLER), f"call {CALLER} at 198.51.100.7")
    b_inv = b_invite_of(h.feed(with_body(invite(), body, "multipart/mixed;boundary=b1"), A))
    assert_clean(b_inv, CALLER)
    assert b_inv.body.endswith(b"a=sendrecv\r\n")


def test_other_types_dropped_with_their_content_type(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    b_inv = b_invite_of(h.feed(with_body(invite(), f"call me: {CALLER}\n", "text/plain"), A))
    assert b_inv.body == b"" and b_inv.headers.get("content-type") is None
    assert b_inv.headers.get("content-length") == "0"


@pytest.mark.parametrize(("body", "ctype", "status", "reason"), [
    (BAD_SDP, "application/sdp", 400, "Bad SDP (SDP line 4: c= expects"),
    (BAD_SDP.replace("c= IP4", "c=IN IP4"), "application/sdp", 400, "Bad SDP (SDP line 7: a= attribute name"),
    (dirty_sdp(CALLER), None, 400, "Body Without Content-Type"),
    (dirty_sdp(CALLER), "", 400, "Body Without Content-Type"),
    ("--b1\nContent-Type: text/plain\n\nhi\n", "multipart/mixed;boundary=b1", 400, "Bad Multipart Body"),
])
@pytest.mark.parametrize("caller", [CALLER, "+15550000000"])  # paired or not: the same answer
def test_bad_offer_refused_before_the_lookup(tmp_path: Path, body: str, ctype: str | None, status: int,
                                             reason: str, caller: str) -> None:
    h = Harness(tmp_path)
    raw = with_body(invite(frm=caller), body, ctype)
    if ctype == "":
        raw = raw.replace("Content-Type: \n", "Content-Type:\n")
    out = h.feed(raw, A)
    assert not only(out, Request, method="INVITE")
    answer = [m for m, d in out if isinstance(m, Response) and m.status >= 200]
    assert len(answer) == 1 and answer[0].status == status and answer[0].reason.startswith(reason)
    assert CALLER_DIGITS.encode() not in answer[0].serialise().split(b"\r\n", 1)[0]
    assert sum(h.b2b.counters.get(k, 0) for k in ("bad_sdp", "bad_body", "body_no_type")) == 1


@pytest.mark.parametrize(("bodies", "ctype", "body"), [
    (BodyPolicy(multipart="refuse"), "multipart/mixed;boundary=b1", multipart(dirty_sdp(CALLER), "x")),
    (BodyPolicy(other="refuse"), "text/plain", "hello"),
])
def test_refused_by_rule_415_with_accept(tmp_path: Path, bodies: BodyPolicy, ctype: str, body: str) -> None:
    h = Harness(tmp_path)
    h.b2b.rules = dataclasses.replace(default_rules(), bodies=bodies)
    out = h.feed(with_body(invite(), body, ctype), A)
    answer = [m for m, d in out if isinstance(m, Response) and m.status >= 200]
    assert [m.status for m in answer] == [415] and answer[0].headers.get("accept") == "application/sdp"
    assert not only(out, Request, method="INVITE") and h.b2b.counters["body_refused"] == 1


def test_early_media_and_200_answers_rebuilt(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    b_inv = b_invite_of(h.feed(invite(), A))
    out = h.feed(with_body(response_to(b_inv, 183, "Session Progress"), dirty_sdp(CALLEE)), GW1)
    early = only(out, Response, status=183)
    assert early and early[0][1] == A
    assert_clean(early[0][0], CALLEE)  # type: ignore[arg-type]
    out = h.feed(with_body(response_to(b_inv, 200, "OK"), dirty_sdp(CALLEE, o_user=f"sip:{CALLEE}@x")), GW1)
    ok = only(out, Response, status=200)
    assert ok and ok[0][1] == A
    assert_clean(ok[0][0], CALLEE)  # type: ignore[arg-type]


def test_bad_early_answer_ends_the_call_488_and_cancel(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    b_inv = b_invite_of(h.feed(invite(), A))
    out = h.feed(with_body(response_to(b_inv, 183, "Session Progress"), BAD_SDP), GW1)
    assert [m.status for m, d in out if isinstance(m, Response) and d == A] == [488]
    assert only(out, Request, method="CANCEL")
    assert h.b2b.counters["bad_sdp"] == 1 and not h.b2b.calls


def test_bad_200_answer_ends_the_call_488_ack_and_bye(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    b_inv = b_invite_of(h.feed(invite(), A))
    out = h.feed(with_body(response_to(b_inv, 200, "OK"), BAD_SDP), GW1)
    assert [m.status for m, d in out if isinstance(m, Response) and d == A] == [488]
    assert only(out, Request, method="ACK") and only(out, Request, method="BYE")
    assert not h.b2b.calls


def test_late_offer_answer_in_ack_rebuilt(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    b_inv = b_invite_of(h.feed(with_body(invite(), "", None), A))
    assert b_inv.body == b""
    out = h.feed(with_body(response_to(b_inv, 200, "OK"), dirty_sdp(CALLEE)), GW1)
    assert_clean(only(out, Response, status=200)[0][0], CALLEE)  # type: ignore[arg-type]
    ack = _ack(h, dirty_sdp(CALLER))
    out = h.feed(ack, A)
    relayed = only(out, Request, method="ACK")
    assert relayed and relayed[0][1] == GW1
    assert_clean(relayed[0][0], CALLER)  # type: ignore[arg-type]


def test_bad_answer_in_ack_ends_the_call(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    b_inv = b_invite_of(h.feed(with_body(invite(), "", None), A))
    h.feed(with_body(response_to(b_inv, 200, "OK"), dirty_sdp(CALLEE)), GW1)
    out = h.feed(_ack(h, BAD_SDP), A)
    acks = only(out, Request, method="ACK")
    assert acks and acks[0][0].body == b""  # the ACK still completes B's 2xx, without the answer
    assert {d for m, d in only(out, Request, method="BYE")} == {A, GW1}
    assert h.b2b.counters["bad_sdp"] == 1 and not h.b2b.calls


def _ack(h: Harness, body: str) -> str:
    raw = (
        "ACK sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKack1\n"
        f"From: \"Alice\" <sip:{CALLER}@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 1 ACK\nMax-Forwards: 70\n"
        "Content-Length: 0\n\n"
    )
    return with_body(raw, body)


def _b_request(out: list[tuple[Request | Response, object]], method: str) -> Request:
    found = only(out, Request, method=method)  # type: ignore[arg-type]
    assert found and found[0][1] == GW1
    message = found[0][0]
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_reinvite_and_update_offer_and_answer_rebuilt(tmp_path: Path, method: str) -> None:
    h = Harness(tmp_path)
    answered_call(h)
    out = h.feed(with_body(in_dialog_request(h, method, "re1", 2), dirty_sdp(CALLER)), A)
    b_req = _b_request(out, method)
    assert_clean(b_req, CALLER)
    out = h.feed(with_body(response_to(b_req, 200, "OK"), dirty_sdp(CALLEE)), GW1)
    answer = [m for m, d in out if isinstance(m, Response) and m.status == 200 and d == A]
    assert answer
    assert_clean(answer[0], CALLEE)


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_bad_in_dialog_offer_answered_here(tmp_path: Path, method: str) -> None:
    h = Harness(tmp_path)
    answered_call(h)
    out = h.feed(with_body(in_dialog_request(h, method, "re1", 2), BAD_SDP), A)
    assert not only(out, Request, method=method)
    assert [m.status for m, d in out if isinstance(m, Response) and d == A and m.status >= 200] == [400]
    assert h.b2b.calls  # the call goes on
    # and the next, good re-offer crosses (no glare left behind)
    out = h.feed(with_body(in_dialog_request(h, method, "re2", 3), dirty_sdp(CALLER)), A)
    assert_clean(_b_request(out, method), CALLER)


def test_bad_answer_to_reinvite_ends_the_call(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    answered_call(h)
    out = h.feed(with_body(in_dialog_request(h, "INVITE", "re1", 2), dirty_sdp(CALLER)), A)
    b_req = _b_request(out, "INVITE")
    out = h.feed(with_body(response_to(b_req, 200, "OK"), BAD_SDP), GW1)
    assert [m.status for m, d in out if isinstance(m, Response) and d == A] == [488]
    assert only(out, Request, method="ACK")
    assert {d for m, d in only(out, Request, method="BYE")} == {A, GW1}
    assert not h.b2b.calls


def test_prack_and_its_200_rebuilt(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    b_inv = b_invite_of(h.feed(invite(extra="Supported: 100rel\n"), A))
    out = h.feed(with_body(response_to(b_inv, 183, "Session Progress", extra="Require: 100rel\nRSeq: 1\n"),
                           dirty_sdp(CALLEE)), GW1)
    early = only(out, Response, status=183)[0][0]
    assert_clean(early, CALLEE)  # type: ignore[arg-type]
    prack = (
        "PRACK sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKpr1\n"
        f"From: <sip:{CALLER}@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={early.to_tag}\nCall-ID: a-call-1\nCSeq: 2 PRACK\n"
        "RAck: 1 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    out = h.feed(with_body(prack, dirty_sdp(CALLER)), A)
    b_prack = _b_request(out, "PRACK")
    assert_clean(b_prack, CALLER)
    out = h.feed(with_body(response_to(b_prack, 200, "OK"), dirty_sdp(CALLEE)), GW1)
    ok = [m for m, d in out if isinstance(m, Response) and m.status == 200 and d == A]
    assert ok
    assert_clean(ok[0], CALLEE)


def test_callee_offer_in_reinvite_rebuilt_toward_the_caller(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    _, b_inv = answered_call(h)
    b_sent = [m for m, d in h.sent if isinstance(m, Request) and m.method == "INVITE" and d == GW1][0]
    raw = (
        f"INVITE sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bKbre1\n"
        f"From: {b_sent.headers.get('to')};tag=btag\nTo: {b_sent.headers.get('from')}\n"
        f"Call-ID: {b_sent.call_id}\nCSeq: 5 INVITE\nContact: <sip:{CALLEE}@127.0.0.3:5080>\n"
        "Max-Forwards: 70\nContent-Length: 0\n\n"
    )
    out = h.feed(with_body(raw, dirty_sdp(CALLEE)), GW1)
    to_a = only(out, Request, method="INVITE")
    assert to_a and to_a[0][1] == A
    assert_clean(to_a[0][0], CALLEE)  # type: ignore[arg-type]


def test_info_dtmf_passes_unchanged_and_other_in_dialog_bodies_are_dropped(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    answered_call(h)
    dtmf = "Signal=5\nDuration=160\n"
    out = h.feed(with_body(in_dialog_request(h, "INFO", "in1", 2), dtmf, "application/dtmf-relay"), A)
    info = _b_request(out, "INFO")
    assert info.body == dtmf.replace("\n", "\r\n").encode()
    assert info.headers.get("content-type") == "application/dtmf-relay"
    out = h.feed(with_body(in_dialog_request(h, "INFO", "in2", 3), f"my number {CALLER}", "text/plain"), A)
    info = _b_request(out, "INFO")
    assert info.body == b"" and info.headers.get("content-type") is None


def test_one_byte_bodies_of_different_types_are_judged_each(tmp_path: Path) -> None:
    """CPython shares one-byte bytes objects: the answer kept for a body is kept per message."""
    h = Harness(tmp_path)
    answered_call(h)
    out = h.feed(with_body(in_dialog_request(h, "INFO", "one1", 2), "x", "text/plain"), A)
    assert _b_request(out, "INFO").body == b""
    out = h.feed(with_body(in_dialog_request(h, "UPDATE", "one2", 3), "x"), A)
    assert not only(out, Request, method="UPDATE")
    assert [m.status for m, d in out if isinstance(m, Response) and d == A and m.status >= 200] == [400]
