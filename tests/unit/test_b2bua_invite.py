"""A new call up to its answer (proxy/b2bua/invite.py): trunk check, identities, the uniform
rejection, the B leg as a new dialog, failover, relayed responses, CANCEL, ring timeout, the
unknown-caller policies, the callee's 2xx held for a late ACK."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from proxy.config import Gateway
from proxy.pairing.model import Match
from proxy.sip.message import Request, Response
from proxy.sip.transaction import Address

from .b2bua_harness import (
    CALLEE,
    CALLEE_V,
    CALLER,
    CALLER_V,
    GW1,
    GW2,
    STRANGER,
    A,
    FakeHook,
    Harness,
    ack_from_caller,
    hooked,
    invite,
    only,
    response_to,
)


@pytest.fixture()
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def test_untrusted_source_gets_403(h: Harness) -> None:
    out = h.feed(invite(), Address("udp", "192.0.2.10", 5060))
    assert [m.status for m, _ in only(out, Response) if m.status >= 200] == [403]
    assert not only(out, Request)


def test_unknown_caller_and_wrong_virtual_get_the_same_answer(h: Harness) -> None:
    out1 = h.feed(invite(frm="+15550000000", cid="c1"), A)
    out2 = h.feed(invite(to="+15557779999", cid="c2"), A)
    final1 = [m for m, _ in only(out1, Response) if m.status >= 200]
    final2 = [m for m, _ in only(out2, Response) if m.status >= 200]
    assert [(m.status, m.reason) for m in final1] == [(404, "Not Found")]
    assert [(m.status, m.reason) for m in final2] == [(404, "Not Found")]
    names1 = [n.lower() for n, _ in final1[0].headers]
    names2 = [n.lower() for n, _ in final2[0].headers]
    assert names1 == names2
    assert not only(out1 + out2, Request)


def test_b_leg_is_a_new_dialog_with_virtual_identities_only(h: Harness) -> None:
    out = h.feed(
        invite(extra=f"P-Asserted-Identity: <sip:{CALLER}@carrier>\nRemote-Party-ID: <sip:{CALLER}@x>\n"
               f"Diversion: <sip:{CALLER}@x>\nUser-Agent: Phone-{CALLER}\nX-Secret: {CALLER}\nSupported: 100rel, timer\n"),
        A,
    )
    trying = only(out, Response, status=100)
    assert trying and trying[0][1] == A
    (b_inv, dest), = only(out, Request, method="INVITE")
    assert dest == GW1
    wire = b_inv.serialise()
    assert CALLER.encode() not in wire and b"5551230001" not in wire
    assert b"127.0.0.2" not in wire.split(b"\r\n\r\n")[0], "caller's address must not appear in B's headers"
    assert b_inv.request_uri.user == CALLEE
    assert b_inv.from_.sip_uri().user == CALLEE_V
    assert b_inv.headers.get("p-asserted-identity") == f"<sip:{CALLEE_V}@127.0.0.1>"
    assert b_inv.call_id != "a-call-1" and b_inv.from_tag != "atag"
    for leaked in ("remote-party-id", "diversion", "user-agent", "x-secret"):
        assert b_inv.headers.get(leaked) is None
    assert b_inv.headers.get("supported") == "100rel, timer"
    assert b"o=- 1 1 IN IP4 127.0.0.1" in b_inv.body and b"s=-" in b_inv.body and b"alice" not in b_inv.body


def test_200_ok_carries_no_callee_identity_back(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    out = h.feed(
        response_to(b_inv, 200, "OK", extra=f"P-Asserted-Identity: <sip:{CALLEE}@pbx>\nServer: PBX-{CALLEE}\nRemote-Party-ID: <sip:{CALLEE}@pbx>\n"),
        GW1,
    )
    (ok, dest), = only(out, Response, status=200)
    assert dest == A
    wire = ok.serialise()
    assert CALLEE.encode() not in wire and b"5559990001" not in wire and b"127.0.0.3" not in wire
    assert ok.headers.get("p-asserted-identity") == f"<sip:{CALLER_V}@127.0.0.1>"


def test_responses_relayed_to_the_caller_share_their_head_whatever_came_before(tmp_path: Path) -> None:
    """The 1xx/2xx relayed to A carry the A INVITE's Via/From/To (with our tag)/Call-ID/CSeq,
    its Record-Route, our Contact and the virtual identity, whether or not a provisional was
    relayed first (the first one renders the lines the later ones reuse)."""
    rr = "Record-Route: <sip:proxy1.example;lr>\nRecord-Route: <sip:proxy2.example;lr>\n"
    shared = ("via", "from", "to", "call-id", "cseq", "record-route", "contact", "p-asserted-identity")

    def head(msg: Response) -> list[tuple[str, str]]:
        return [(k, v) for k, _, v in msg.headers.keyed() if k in shared]

    relayed: dict[str, list[Response]] = {}
    for flow in ("ringing first", "answered at once"):
        (tmp_path / flow.replace(" ", "_")).mkdir()
        hh = Harness(tmp_path / flow.replace(" ", "_"))
        out = hh.feed(invite(extra=rr, branch="z9hG4bKsame"), A)
        b_inv = only(out, Request, method="INVITE")[0][0]
        got = []
        if flow == "ringing first":
            (ringing, _), = only(hh.feed(response_to(b_inv, 180, "Ringing"), GW1), Response, status=180)
            got.append(ringing)
        (ok, _), = only(hh.feed(response_to(b_inv, 200, "OK", extra='Warning: 399 gw "a line of its own"\n'), GW1), Response, status=200)
        got.append(ok)
        relayed[flow] = got
    ringing, ok = relayed["ringing first"]
    (direct,) = relayed["answered at once"]
    assert head(ringing) == head(ok) == head(direct)
    assert [v for k, v in head(ok) if k == "record-route"] == ["<sip:proxy1.example;lr>", "<sip:proxy2.example;lr>"]
    assert ok.to_tag and ok.to_tag == ringing.to_tag
    assert ok.headers.get("warning") == direct.headers.get("warning") == '399 gw "a line of its own"'
    assert ringing.headers.get("warning") is None  # each response's own lines stay its own
    assert ok.serialise().replace(ok.to_tag.encode(), b"T") == direct.serialise().replace(direct.to_tag.encode(), b"T")


def test_failover_on_503_goes_to_next_gateway(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    out = h.feed(response_to(b_inv, 503, "Service Unavailable"), GW1)
    (retry, dest), = only(out, Request, method="INVITE")
    assert dest == GW2
    assert not [m for m, d in out if isinstance(m, Response) and d == A and m.status >= 200]


def test_failover_when_the_gateway_is_silent(h: Harness) -> None:
    h.feed(invite(), A)
    out = h.advance(2.5)
    assert [d for m, d in only(out, Request, method="INVITE")][-1] == GW2


def test_busy_is_relayed(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(response_to(b_inv, 486, "Busy Here"), GW1)
    assert only(out, Request, method="ACK"), "the client transaction ACKs the 486 hop by hop"
    assert [(m.status, d) for m, d in only(out, Response) if m.status >= 200] == [(486, A)]
    assert h.b2b.active_calls == 0


def test_redirect_is_not_relayed_with_its_contacts(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    out = h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(
        response_to(b_inv, 302, "Moved", extra=f"Contact: <sip:{CALLEE}@10.9.9.9>\n"),
        GW1,
    )
    (final, _), = [(m, d) for m, d in only(out, Response) if d == A and m.status >= 200]
    assert final.status == 480 and CALLEE.encode() not in final.serialise()


def test_ring_timeout_answers_480_and_cancels_b(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.advance(31)
    # set: Timer G retransmits the 480 since this caller never ACKs (§17.2.1)
    assert {m.status for m, d in only(out, Response) if d == A and m.status >= 200} == {480}
    assert only(out, Request, method="CANCEL")


def test_cancel_before_any_provisional_waits_for_one(h: Harness) -> None:
    raw = invite(branch="z9hG4bKcx")
    out = h.feed(raw, A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    cancel = (
        "CANCEL sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKcx\n"
        "From: \"Alice\" <sip:+15551230001@127.0.0.2:5070>;tag=atag\nTo: <sip:+15557770001@127.0.0.1:5060>\n"
        "Call-ID: a-call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    out = h.feed(cancel, A)
    statuses = sorted(m.status for m, d in only(out, Response) if d == A)
    assert statuses == [200, 487]
    assert not only(out, Request, method="CANCEL"), "§9.1: no CANCEL before a provisional"
    out = h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    assert only(out, Request, method="CANCEL")


def test_trusted_trunk_identity_comes_from_pai(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config='[[trunks]]\nname = "carrier"\nsources = ["127.0.0.2/32"]\ntrust_pai = true\n')
    # From carries a number with no pairing; the trusted PAI names the paired caller
    out = h.feed(invite(frm="+15550000000", extra=f"P-Asserted-Identity: <sip:{CALLER}@carrier>\n"), A)
    assert only(out, Request, method="INVITE"), "identity taken from P-Asserted-Identity"


def test_untrusted_trunk_ignores_pai(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config='[[trunks]]\nname = "pbx"\nsources = ["127.0.0.2/32"]\ntrust_pai = false\n')
    out = h.feed(invite(frm="+15550000000", extra=f"P-Asserted-Identity: <sip:{CALLER}@carrier>\n"), A)
    assert [m.status for m, _ in only(out, Response) if m.status >= 200] == [404]
    assert not only(out, Request)


def test_national_numbers_are_normalised_with_the_trunk_region(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config='[[trunks]]\nname = "us"\nsources = ["127.0.0.0/8"]\ndefault_region = "US"\n')
    out = h.feed(invite(frm="5551230001", to="(555) 777-0001".replace(" ", "")), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    assert b_inv.request_uri.user == CALLEE


def test_hook_answer_connects_an_unknown_caller(tmp_path: Path) -> None:
    hook = FakeHook()
    h = hooked(tmp_path, hook)
    out = h.feed(invite(frm=STRANGER), A)
    assert [m.status for m, _ in only(out, Response)] == [100] and not only(out, Request)
    (caller, dialed, done), = hook.asked
    assert (caller, dialed) == (STRANGER, CALLER_V)
    done(Match("hook", CALLEE, CALLEE_V), h.now)  # type: ignore[operator]
    (b_inv, dest), = only(h.drain(), Request, method="INVITE")
    assert dest == GW1 and b_inv.request_uri.user == CALLEE
    assert STRANGER.encode() not in b_inv.serialise()


def test_hook_reject_and_cached_reject_get_the_uniform_answer(tmp_path: Path) -> None:
    hook = FakeHook({("+15550000001", CALLER_V): None})
    h = hooked(tmp_path, hook)
    out = h.feed(invite(frm="+15550000001", cid="c1"), A)
    assert [m.status for m, _ in only(out, Response) if m.status >= 200] == [404]
    h.feed(invite(frm=STRANGER, cid="c2"), A)
    hook.asked[0][2](None, h.now)  # type: ignore[operator]
    assert [m.status for m, _ in only(h.drain(), Response) if m.status >= 200] == [404]


def test_cancel_while_the_hook_thinks_gets_487_and_a_late_answer_is_ignored(tmp_path: Path) -> None:
    hook = FakeHook()
    h = hooked(tmp_path, hook)
    h.feed(invite(frm=STRANGER, branch="z9hG4bKhk"), A)
    out = h.feed(
        "CANCEL sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKhk\n"
        f"From: \"Alice\" <sip:{STRANGER}@127.0.0.2:5070>;tag=atag\nTo: <sip:+15557770001@127.0.0.1:5060>\n"
        "Call-ID: a-call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n",
        A,
    )
    assert sorted(m.status for m, _ in only(out, Response)) == [200, 487]
    hook.asked[0][2](Match("hook", CALLEE, CALLEE_V), h.now)  # type: ignore[operator]
    assert not only(h.drain(), Request, method="INVITE")
    assert h.b2b.active_calls == 0


def test_fallback_route_policy_sends_unknown_callers_to_the_fallback(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config="")
    gw = Gateway("udp", "127.0.0.9", 5099)
    h.b2b.calls_cfg = dataclasses.replace(h.b2b.calls_cfg, unknown_policy="route", fallback_route=(gw,))
    out = h.feed(invite(frm=STRANGER), A)
    (b_inv, dest), = only(out, Request, method="INVITE")
    assert (dest.host, dest.port) == ("127.0.0.9", 5099)
    assert STRANGER.encode() not in b_inv.serialise() and b"5550000000" not in b_inv.serialise()


def test_callee_2xx_retransmitted_before_the_callers_late_ack_is_held_never_byed(h: Harness) -> None:
    """RFC 3261 §13.3.1.4 / §13.2.2.4: the callee re-sends its 2xx until it gets an ACK; the
    B2BUA holds it until the caller's ACK (which may carry the answer of a late offer) and
    then ACKs; a retransmitted 2xx of the answered call is never taken for a stray one."""
    out = h.feed(invite(), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)
    assert only(out, Response, status=200)
    # the caller's ACK is 700 ms late: the callee retransmits its 2xx at T1, 2*T1
    for wait in (0.5, 0.2):
        h.advance(wait)
        out = h.feed(response_to(b_inv, 200, "OK"), GW1)
        assert not only(out, Request), [m.method for m, _ in only(out, Request)]
    assert h.b2b.active_calls == 1
    out = h.feed(ack_from_caller(h), A)
    (ack, dest), = only(out, Request, method="ACK")
    assert dest == GW1 and ack.call_id == b_inv.call_id
    # further 2xx retransmissions (our ACK lost) are re-ACKed, never BYEd
    h.advance(0.5)
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)
    assert [m.method for m, _ in only(out, Request)] == ["ACK"]
    h.advance(30)
    assert h.b2b.active_calls == 1
    assert not only(h.sent, Request, method="BYE")


def test_callee_2xx_retransmitted_when_the_callers_ack_never_comes_ends_the_call_once(h: Harness) -> None:
    """No ACK from the caller within 64*T1 (§13.3.1.4): both legs are released once, with BYE."""
    out = h.feed(invite(), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    h.feed(response_to(b_inv, 200, "OK"), GW1)
    for _ in range(5):
        h.advance(1)
        out = h.feed(response_to(b_inv, 200, "OK"), GW1)
        assert not only(out, Request, method="BYE")
    h.advance(40)
    byes = only(h.sent, Request, method="BYE")
    assert len({m.branch for m, d in byes if d == GW1}) == 1  # one BYE (and its retransmissions)
    assert h.b2b.active_calls == 0
    h.service.flush()
    (cdr,) = h.store.list_cdrs()
    assert cdr.cause == "no_ack"


def test_a_callee_silent_after_our_cancel_leaves_nothing_behind(h: Harness) -> None:
    """RFC 3261 §9.1 / RFC 6026: the callee rings, takes the CANCEL (200) and never sends the
    final response of its INVITE. The B-leg INVITE transaction still times out 64*T1 after
    the CANCEL; before, it lived forever (16 left in /metrics after a fuzz run)."""
    out = h.feed(invite(branch="z9hG4bKsil"), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(
        "CANCEL sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKsil\n"
        "From: \"Alice\" <sip:+15551230001@127.0.0.2:5070>;tag=atag\nTo: <sip:+15557770001@127.0.0.1:5060>\n"
        "Call-ID: a-call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n", A)
    (b_cancel, _), = only(out, Request, method="CANCEL")
    h.feed(response_to(b_cancel, 200, "OK"), GW1)  # and then nothing more from the callee
    h.advance(200)
    assert sum(h.layer.counts.values()) == 0, h.layer.counts
    assert h.b2b.active_calls == 0
    h.service.flush()
    (cdr,) = h.store.list_cdrs()
    assert (cdr.outcome, cdr.cause, cdr.sip_code) == ("cancelled", "caller_cancel", 487)


def test_an_open_pairing_whose_callee_has_no_route_gets_the_uniform_answer(h: Harness) -> None:
    """Whoever can spoof a paired caller must not learn which virtual numbers are paired: a
    pairing sipmask cannot route answers exactly as no pairing at all (it was 503)."""
    from proxy.pairing.model import Participant

    unroutable = "+15558880001"  # outside every [[routes]] prefix of the harness
    h.store.create_session(Participant("+15551230009", "+15557770009"),
                           Participant(unroutable, "+15557770010"), now=h.now)
    h.service.poll()
    out1 = h.feed(invite(frm="+15551230009", to="+15557770009", cid="nr1"), A)
    out2 = h.feed(invite(frm="+15550000000", to="+15557770009", cid="nr2"), A)
    final1 = [m for m, _ in only(out1, Response) if m.status >= 200]
    final2 = [m for m, _ in only(out2, Response) if m.status >= 200]
    assert [(m.status, m.reason) for m in final1] == [(m.status, m.reason) for m in final2] == [(404, "Not Found")]
    assert [n.lower() for n, _ in final1[0].headers] == [n.lower() for n, _ in final2[0].headers]
    assert not only(out1, Request)
    assert h.b2b.counters["no_route"] == 1  # the real reason is counted (and logged)


def _b_invites(out: list[tuple[Request | Response, Address]]) -> list[Request]:
    return [m for m, _ in only(out, Request, method="INVITE")]  # type: ignore[misc]


def test_rfc4028_7_4_422_is_retried_in_the_same_b_leg_attempt_then_a_bad_session_expires_is_ignored(
        tmp_path: Path) -> None:
    """An SDP-less 422 with Min-SE: the B-leg INVITE goes again with the same Call-ID and From
    tag, CSeq + 1, Session-Expires and Min-SE raised; the 200 that follows carries a
    Session-Expires that does not parse: the call is answered without a session timer."""
    from .b2bua_harness import GW1

    h = Harness(tmp_path)
    (first,) = _b_invites(h.feed(invite(extra="Supported: timer\nSession-Expires: 90;refresher=uac\n"), A))
    assert first.headers.get("session-expires") == "90;refresher=uac"
    out = h.feed(response_to(first, 422, "Session Interval Too Small", extra="Min-SE: 1800\n"), GW1)
    (retry,) = _b_invites(out)
    assert retry.call_id == first.call_id and retry.from_tag == first.from_tag
    assert retry.cseq.number == first.cseq.number + 1 and retry.branch != first.branch
    assert retry.headers.get("session-expires") == "1800;refresher=uac"
    assert retry.headers.get("min-se") == "1800"
    assert not [m for m, d in out if d == A and isinstance(m, Response) and m.status >= 200]
    out = h.feed(response_to(retry, 200, "OK", extra="Session-Expires: soon;refresher=uas\n"), GW1)
    assert [m.status for m, d in only(out, Response) if d == A] == [200]
    call = next(iter(h.b2b.calls.values()))
    assert call.session_interval == 0 or call.session_interval is None
    assert h.b2b.counters.get("internal_error") is None


def test_rfc4028_7_4_422_retried_at_most_twice_then_relayed(tmp_path: Path) -> None:
    from .b2bua_harness import GW1

    h = Harness(tmp_path)
    (b_inv,) = _b_invites(h.feed(invite(extra="Session-Expires: 90\n"), A))
    for min_se in (600, 1200):
        (b_inv,) = _b_invites(h.feed(response_to(b_inv, 422, "Too Small", extra=f"Min-SE: {min_se}\n"), GW1))
        assert b_inv.headers.get("session-expires") == str(min_se)
    out = h.feed(response_to(b_inv, 422, "Too Small", extra="Min-SE: 1800\n"), GW1)
    assert not _b_invites(out)
    assert [m.status for m, d in only(out, Response) if d == A] == [422]


@pytest.mark.parametrize("min_se", ["", "abc", "60"])
def test_rfc4028_7_4_422_without_a_usable_higher_min_se_is_relayed(tmp_path: Path, min_se: str) -> None:
    from .b2bua_harness import GW1

    h = Harness(tmp_path)
    (b_inv,) = _b_invites(h.feed(invite(extra="Session-Expires: 90\n"), A))
    extra = f"Min-SE: {min_se}\n" if min_se else ""
    out = h.feed(response_to(b_inv, 422, "Too Small", extra=extra), GW1)
    assert not _b_invites(out)
    assert [m.status for m, d in only(out, Response) if d == A] == [422]
