"""Requests within a call (proxy/b2bua/in_dialog.py): relayed across legs without identities,
REFER refused, glare, BYE crossing a re-INVITE, session timers."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.sip.message import Request, Response

from .b2bua_harness import (
    CALLEE,
    CALLER,
    GW1,
    A,
    Harness,
    a_tag,
    ack_from_caller,
    answered_call,
    from_callee,
    in_dialog_request,
    invite,
    only,
    response_to,
)


@pytest.fixture()
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_refer_is_refused_and_glare_gets_491(h: Harness) -> None:
    answered_call(h)
    tag = a_tag(h)

    def req(method: str, branch: str, cseq: int, extra: str = "") -> str:
        return (
            f"{method} sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{branch}\n"
            "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
            f"To: <sip:+15557770001@127.0.0.1:5060>;tag={tag}\nCall-ID: a-call-1\nCSeq: {cseq} {method}\n"
            f"Contact: <sip:+15551230001@127.0.0.2:5070>\nMax-Forwards: 70\n{extra}Content-Length: 0\n\n"
        )

    out = h.feed(req("REFER", "r1", 5, "Refer-To: <sip:+15550001111@x>\n"), A)
    assert [m.status for m, _ in only(out, Response)] == [403]
    out = h.feed(req("INVITE", "ri1", 6), A)
    assert only(out, Request, method="INVITE"), "re-INVITE relayed"
    out = h.feed(req("INVITE", "ri2", 7), A)
    assert 491 in [m.status for m, _ in only(out, Response)]


def test_options_in_dialog_crosses_legs_without_identities(h: Harness) -> None:
    answered_call(h)
    out = h.feed(in_dialog_request(h, "OPTIONS", "o2", 3, extra=f"User-Agent: Phone-{CALLER}\n"), A)
    (b_opt, dest), = only(out, Request, method="OPTIONS")
    assert dest.host == "127.0.0.3"
    wire = b_opt.serialise()
    assert CALLER.encode() not in wire and b"127.0.0.2" not in wire
    out = h.feed(response_to(b_opt, 200, "OK", extra=f"Server: PBX-{CALLEE}\n"), GW1)
    (ok, dest), = only(out, Response, status=200)
    assert dest == A and CALLEE.encode() not in ok.serialise()


def test_bye_crossing_a_reinvite_frees_both_legs(h: Harness) -> None:
    """A re-INVITEs (hold); before B answers it, B hangs up. A's re-INVITE gets a final answer,
    A gets a BYE, and nothing of the call survives."""
    _, b_inv = answered_call(h)
    out = h.feed(in_dialog_request(h, "INVITE", "hold1", 2), A)
    (b_reinv, _), = only(out, Request, method="INVITE")
    out = h.feed(from_callee(b_inv, "BYE", "bbye1", 1), GW1)
    assert [m.status for m, d in only(out, Response) if d.host == "127.0.0.3"] == [200]
    (a_bye, dest), = only(out, Request, method="BYE")
    assert dest.host == "127.0.0.2"
    # the callee answers its pending re-INVITE (481/487 after its BYE) and A's BYE is answered
    h.feed(response_to(b_reinv, 487, "Request Terminated"), GW1)
    finals = [m.status for m, d in only(h.sent, Response) if d == A and m.cseq.method == "INVITE" and m.cseq.number == 2 and m.status >= 200]
    assert finals and all(s >= 300 for s in finals), finals
    h.feed(response_to(a_bye, 200, "OK"), A)
    h.advance(64)
    assert h.b2b.active_calls == 0 and not h.b2b.dialogs
    assert sum(h.layer.counts.values()) == 0, h.layer.counts


def test_session_timer_refreshed_by_reinvite_keeps_the_call(h: Harness) -> None:
    out = h.feed(invite(extra="Supported: timer\nSession-Expires: 90\n"), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    h.feed(response_to(b_inv, 200, "OK", extra="Session-Expires: 90;refresher=uac\nRequire: timer\n"), GW1)
    h.feed(
        "ACK sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKack9\n"
        "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        A,
    )
    h.advance(60)
    out = h.feed(in_dialog_request(h, "INVITE", "refresh1", 2, extra="Session-Expires: 90;refresher=uac\n"), A)
    (b_refresh, _), = only(out, Request, method="INVITE")
    h.feed(response_to(b_refresh, 200, "OK", extra="Session-Expires: 90;refresher=uac\nRequire: timer\n"), GW1)
    out = h.advance(60)  # 120 s after the answer, 60 s after the refresh: still up
    assert not only(out, Request, method="BYE")
    assert h.b2b.active_calls == 1
    out = h.advance(40)  # no further refresh: it ends
    assert only(out, Request, method="BYE")
    assert h.b2b.active_calls == 0


def test_session_timer_without_refresh_ends_the_call(h: Harness) -> None:
    out = h.feed(invite(extra="Supported: timer\nSession-Expires: 90\n"), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    assert b_inv.headers.get("session-expires") == "90"
    h.feed(response_to(b_inv, 200, "OK", extra="Session-Expires: 90;refresher=uac\nRequire: timer\n"), GW1)
    out = h.advance(91)
    assert len(only(out, Request, method="BYE")) >= 1
    assert h.b2b.active_calls == 0


def test_sipmask_asks_the_callee_for_a_session_timer_the_caller_did_not(tmp_path: Path) -> None:
    """calls.session_expires_s (1800 by default): the B leg gets a session timer with the
    callee as refresher; the caller, who asked for none, never sees its lines (RFC 4028 §7.1,
    §9); the callee's refreshes keep the call, answered for the timer by sipmask."""
    h = Harness(tmp_path, calls_config="max_duration_s = 86400")
    out = h.feed(invite(extra="Supported: 100rel\n"), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    assert b_inv.headers.get("session-expires") == "1800;refresher=uas"
    assert b_inv.headers.get("min-se") == "90"
    assert b_inv.headers.values("supported") == ["100rel", "timer"]
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(response_to(b_inv, 200, "OK", extra="Session-Expires: 1800;refresher=uas\nRequire: timer, 100rel\n"), GW1)
    (ok, _), = only(out, Response, status=200)
    assert ok.headers.get("session-expires") is None
    assert ok.headers.values("require") == ["100rel"]
    h.feed(
        "ACK sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKack9\n"
        "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        A,
    )
    h.advance(900)  # the callee refreshes at half the interval
    out = h.feed(from_callee(b_inv, "UPDATE", "refresh1", 2,
                             extra="Session-Expires: 1800;refresher=uac\nRequire: timer\nSupported: timer\n"), GW1)
    (to_a, _), = only(out, Request, method="UPDATE")
    assert to_a.headers.get("session-expires") is None and "timer" not in to_a.headers.values("require")
    # the caller knows no timer: a plain 200
    out = h.feed(response_to(to_a, 200, "OK", contact=f"sip:{CALLER}@127.0.0.2:5070"), A)
    (to_b, _), = only(out, Response, status=200)
    assert to_b.headers.get("session-expires") == "1800;refresher=uas"
    assert to_b.headers.values("require") == ["timer"]
    out = h.advance(1200)  # 2,100 s after the answer, 1,200 s after the refresh: still up
    assert not only(out, Request, method="BYE") and h.b2b.active_calls == 1
    out = h.advance(601)  # no refresh for a whole interval: the session is dead
    assert {d for _, d in only(out, Request, method="BYE")} == {A, GW1}


def test_a_callee_without_session_timers_is_unaffected(h: Harness) -> None:
    """The callee answers without Session-Expires (RFC 4028 §7.4: no session expiration): the
    call lasts as long as the parties want (up to calls.max_duration_s)."""
    out = h.feed(invite(), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    h.feed(response_to(b_inv, 200, "OK"), GW1)
    h.feed(ack_from_caller(h), A)
    out = h.advance(590)  # max_duration_s = 600 in the harness
    assert not only(out, Request, method="BYE") and h.b2b.active_calls == 1


def test_reinvite_reusing_the_first_invites_branch_is_relayed_and_answered(h: Harness) -> None:
    """A broken client's re-INVITE carries its first INVITE's branch while that transaction
    still lingers (RFC 6026 Accepted, 32 s): it was absorbed as a retransmission and never
    answered. It is a new request (other CSeq): relayed to the callee, its answer relayed back."""
    answered_call(h)
    first_200 = [m for m, d in h.sent if isinstance(m, Response) and m.status == 200 and d == A][0]
    branch = first_200.top_via.branch or ""
    h.advance(2.0)
    out = h.feed(in_dialog_request(h, "INVITE", branch.removeprefix("z9hG4bK"), 2), A)
    (b_reinvite, dest), = only(out, Request, method="INVITE")
    assert dest == GW1 and b_reinvite.headers.get("to") and "tag=btag" in (b_reinvite.headers.get("to") or "")
    out = h.feed(response_to(b_reinvite, 200, "OK"), GW1)
    (ok, dest), = only(out, Response, status=200)
    assert dest == A and ok.cseq.number == 2 and ok.cseq.method == "INVITE"


@pytest.mark.parametrize(("supported", "expected"), [
    ("Supported:\n", "timer"),            # baresip sends an empty Supported (no option tags)
    ("Supported: \nSupported: 100rel\n", "100rel, timer"),
    ("Supported: 100rel, , replaces\n", "100rel, replaces, timer"),
])
def test_the_timer_sipmask_asks_for_is_added_to_supported_without_empty_tags(
        h: Harness, supported: str, expected: str) -> None:
    """RFC 3261 §20.37: Supported is ``[option-tag *(COMMA option-tag)]``. A caller's empty
    Supported line (a real softphone's) must not become ``Supported: , timer`` on the B leg."""
    out = h.feed(invite(extra=supported), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    assert b_inv.headers.get_all("supported") == [expected]
    assert (b_inv.headers.get("session-expires") or "").endswith("refresher=uas")
