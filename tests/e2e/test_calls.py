"""Call flows through a real ``sipmask run`` between SIPp peers, asserting on received bytes.

Every call test ends with the leak check (``assert_isolated``): neither party received the
other's real number, signalling address, identity headers or SDP markers.
"""

from __future__ import annotations

import re
import time

import pytest

from .conftest import (
    A_PREFIX,
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    B_REAL,
    B_VIRTUAL,
    CALLEE_IP,
    CALLER_IP,
    DISTINCT_IPS,
    SPARE_IP,
    SipMsg,
    assert_isolated,
    assert_sipp_ok,
    find,
    free_port,
)

pytestmark = pytest.mark.e2e


def _route_to(peer_ip: str, port: int, transport: str = "udp") -> str:
    return f"{transport}:{peer_ip}:{port}"


def _call(sipp, sipmask_factory, uac: str, uas: str, *, calls: int = 1, sm_calls=None,
          transport: str = "udp", uac_timeout: float = 20):
    """Standard topology: A (caller, 127.0.0.2) dials A_VIRTUAL; sipmask bridges to B (127.0.0.3)."""
    callee = sipp.start_uas(uas, calls=calls)
    sm = sipmask_factory([(B_PREFIX, [_route_to(CALLEE_IP, callee.port)])], calls=sm_calls)
    target = sm.tcp_target if transport == "tcp" else sm.udp_target
    caller = sipp.run_uac(uac, target, service=A_VIRTUAL, calls=calls, transport=transport,
                          timeout_s=uac_timeout)
    sipp.wait(callee)
    return sm, caller, callee


def _one(messages: list[SipMsg], what: str, **kw) -> SipMsg:
    found = find(messages, **kw)
    assert found, f"no {what} among {[m.start for m in messages]}"
    return found[0]


def _assert_b_leg_identity(callee_msgs: list[SipMsg], presented: str = B_VIRTUAL,
                           callee_real: str = B_REAL) -> None:
    """The B-leg INVITE: R-URI is the callee's real number, From and PAI the virtual number."""
    invite = _one(callee_msgs, "INVITE", method="INVITE", request=True)
    assert invite.start.split()[1].startswith(f"sip:{callee_real}@"), invite.start
    assert presented in (invite.header("From") or ""), invite.head
    pai = invite.header("P-Asserted-Identity")
    assert pai is None or presented in pai, invite.head


# ------------------------------------------------------------------------------ 1. basic


def test_basic_call_five_times(sipp, sipmask_factory):
    """A dials A-virtual 5 times: 180, 200 with SDP, ACK, BYE from the caller, every time."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_basic.xml", "uas_basic.xml", calls=5)
    assert_sipp_ok(caller, callee)

    callee_msgs = callee.messages()
    invites = find(callee_msgs, method="INVITE", request=True)
    assert len(invites) == 5
    _assert_b_leg_identity(callee_msgs)
    # a new dialog per call on the B leg: Call-IDs differ from the caller's and from each other
    b_call_ids = {m.header("Call-ID") for m in invites}
    assert len(b_call_ids) == 5
    caller_call_ids = {m.header("Call-ID") for m in caller.messages()}
    assert not b_call_ids & caller_call_ids
    # the caller saw 180 and a 200 with SDP for each call
    caller_msgs = caller.messages()
    assert len(find(caller_msgs, status=180)) == 5
    ok_invite = find(caller_msgs, status=200, method="INVITE")
    assert len(ok_invite) == 5 and all("m=audio" in m.body for m in ok_invite)
    # SDP o= rewritten on both legs: the sender's username and address are gone
    for m in invites + ok_invite:
        o_line = next(line for line in m.body.splitlines() if line.startswith("o="))
        assert not o_line.startswith(("o=alice-uac", "o=bob-uas")), o_line
        if DISTINCT_IPS:
            assert CALLER_IP not in o_line and CALLEE_IP not in o_line, o_line
    assert len(find(callee_msgs, method="ACK", request=True)) == 5
    assert len(find(callee_msgs, method="BYE", request=True)) == 5
    assert_isolated(caller, callee)


# --------------------------------------------------------------------------- 2. callback


def test_callback_reaches_caller_through_virtual_number(sipp, sipmask_factory):
    """B dials B-virtual and reaches A, who sees A-virtual calling (roles swapped)."""
    a_phone = sipp.start_uas("uas_basic.xml", name="a-phone", ip=CALLER_IP, number=A_REAL)
    sm = sipmask_factory([
        (B_PREFIX, [_route_to(CALLEE_IP, free_port(CALLEE_IP))]),
        (A_PREFIX, [_route_to(CALLER_IP, a_phone.port)]),
    ])
    b_phone = sipp.run_uac("uac_basic.xml", sm.udp_target, service=B_VIRTUAL, name="b-phone",
                           ip=CALLEE_IP, number=B_REAL)
    sipp.wait(a_phone)
    assert_sipp_ok(b_phone, a_phone)
    _assert_b_leg_identity(a_phone.messages(), presented=A_VIRTUAL, callee_real=A_REAL)
    assert_isolated(b_phone, a_phone)


# ------------------------------------------------------------------------ 3. CANCEL


def test_cancel_before_answer(sipp, sipmask_factory):
    """The caller CANCELs while the callee rings: caller gets 200 + 487; callee gets CANCEL,
    answers 200 + 487 and gets the ACK."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_cancel.xml", "uas_ring_cancel.xml")
    assert_sipp_ok(caller, callee)
    caller_msgs = caller.messages()
    _one(caller_msgs, "200 to CANCEL", status=200, method="CANCEL")
    _one(caller_msgs, "487", status=487, method="INVITE")
    callee_msgs = callee.messages()
    cancel = _one(callee_msgs, "CANCEL", method="CANCEL", request=True)
    invite = _one(callee_msgs, "INVITE", method="INVITE", request=True)
    # RFC 3261 §9.1: the CANCEL matches the B-leg INVITE (same branch, Call-ID, CSeq number)
    assert cancel.header("Via") == invite.header("Via")
    assert cancel.header("Call-ID") == invite.header("Call-ID")
    assert cancel.header("CSeq").split()[0] == invite.header("CSeq").split()[0]
    _one(callee_msgs, "ACK", method="ACK", request=True)
    assert_isolated(caller, callee)


# -------------------------------------------------------------------------- 4. busy


def test_busy_is_relayed(sipp, sipmask_factory):
    """The callee answers 486: the caller gets 486 (and nothing of the callee's identity)."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_busy.xml", "uas_busy.xml")
    assert_sipp_ok(caller, callee)
    busy = _one(caller.messages(), "486", status=486)
    assert busy.method == "INVITE"
    _one(callee.messages(), "ACK", method="ACK", request=True)
    assert_isolated(caller, callee)


# --------------------------------------------------------------------- 5. no answer


def test_no_answer_times_out_with_480_and_cancels_callee(sipp, sipmask_factory):
    """The callee only rings; after ring_timeout_s the caller gets 480 and the callee a CANCEL."""
    started = time.monotonic()
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_noanswer.xml", "uas_ring_cancel.xml",
                               sm_calls={"ring_timeout_s": 1.5})
    assert_sipp_ok(caller, callee)
    assert time.monotonic() - started >= 1.5
    _one(caller.messages(), "480", status=480, method="INVITE")
    _one(callee.messages(), "CANCEL", method="CANCEL", request=True)
    assert_isolated(caller, callee)


# -------------------------------------------------------- 6. unknown caller / 7. expired

_ECHOED = ("via", "from", "to", "call-id", "cseq", "content-length")


def _rejection_fingerprint(msg: SipMsg, csv_fields: list[str]) -> tuple:
    """What must not differ between rejections: status line and every header, except the
    values sipmask echoes from the request (Via, From, To, Call-ID, CSeq) and tags/branches."""
    head = []
    for name, value in msg.headers:
        lname = name.lower()
        if lname in _ECHOED:
            head.append((lname, None))
            continue
        value = re.sub(r"(tag|branch)=[^;>\s]+", r"\1=*", value)
        for field_value in csv_fields:
            value = value.replace(field_value, "<n>")
        head.append((lname, value))
    return msg.start, tuple(head), msg.body


def _write_csv(path, rows: list[tuple[str, str]]) -> str:
    path.write_text("SEQUENTIAL\n" + "".join(f"{a};{b};\n" for a, b in rows))
    return str(path)


def test_unknown_caller_and_wrong_virtual_get_the_same_404(sipp, sipmask_factory, tmp_path):
    """No pairing at all, an unknown number, and a paired caller dialing the wrong virtual
    number all get the same rejection, so the pairing table cannot be probed."""
    callee_port = free_port(CALLEE_IP)
    sm = sipmask_factory([(B_PREFIX, [_route_to(CALLEE_IP, callee_port)])])
    rows = [
        ("+15550000001", A_VIRTUAL),     # unknown caller, existing virtual number
        ("+15550000001", "+15557779999"),  # unknown caller, unknown number
        (A_REAL, "+15557779999"),        # paired caller, wrong virtual number
        (A_REAL, B_VIRTUAL),             # paired caller, the *other* side's virtual number
    ]
    csv = _write_csv(tmp_path / "rejected.csv", rows)
    caller = sipp.run_uac("uac_rejected.xml", sm.udp_target, service="unused", calls=len(rows),
                          extra=["-inf", csv])
    assert_sipp_ok(caller)
    finals = [m for m in caller.messages() if m.is_response and (m.status or 0) >= 200]
    assert len(finals) == len(rows), [m.start for m in finals]
    assert {(m.status, m.reason) for m in finals} == {(404, "Not Found")}
    fields = [v for row in rows for v in row]
    prints = {_rejection_fingerprint(m, fields) for m in finals}
    assert len(prints) == 1, "rejections differ:\n" + "\n---\n".join(m.head for m in finals)
    for m in finals:
        assert B_REAL not in m.raw and "5559990001" not in m.raw


def test_expired_pairing_is_rejected_like_unknown(sipp, sipmask_factory, tmp_path):
    """A pairing made with --expires-in works until it expires, then gets the same 404."""
    callee = sipp.start_uas("uas_basic.xml")
    sm = sipmask_factory([(B_PREFIX, [_route_to(CALLEE_IP, callee.port)])], pairing=False, start=False)
    sm.add_pairing(A_REAL, A_VIRTUAL, B_REAL, B_VIRTUAL, "--expires-in", "3")
    # the CLI computed the expiry from its own clock before it returned: it is due by now + 3
    # (measuring before the call would undercount a slow CLI start, e.g. a cold .pyc cache)
    created = time.time()
    sm.start()
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    assert_isolated(caller, callee)

    time.sleep(max(0.0, created + 3.3 - time.time()))
    csv = _write_csv(tmp_path / "expired.csv", [(A_REAL, A_VIRTUAL), ("+15550000001", A_VIRTUAL)])
    late = sipp.run_uac("uac_rejected.xml", sm.udp_target, service="unused", name="caller-late",
                        calls=2, extra=["-inf", csv])
    assert_sipp_ok(late)
    finals = [m for m in late.messages() if m.is_response and (m.status or 0) >= 200]
    assert [(m.status, m.reason) for m in finals] == [(404, "Not Found")] * 2
    fields = [A_REAL, A_VIRTUAL, "+15550000001"]
    assert len({_rejection_fingerprint(m, fields) for m in finals}) == 1, \
        "\n---\n".join(m.head for m in finals)


def test_overload_refusal_is_a_stateless_503_with_retry_after(sipp, sipmask_factory, tmp_path):
    """Calls refused for overload (here a max_cps the bucket never fills) get a lone 503 with
    Retry-After, sent statelessly (RFC 3261 §8.2.7): no 100 Trying, the same per-process To tag
    on every refusal, and the caller's ACK absorbed (SIPp sees nothing after it)."""
    sm = sipmask_factory([(B_PREFIX, [_route_to(CALLEE_IP, free_port(CALLEE_IP))])],
                         calls={"max_cps": 0.001})
    csv = _write_csv(tmp_path / "overloaded.csv", [(A_REAL, A_VIRTUAL)] * 3)
    caller = sipp.run_uac("uac_overloaded.xml", sm.udp_target, service="unused", calls=3,
                          extra=["-inf", csv])
    assert_sipp_ok(caller)
    responses = [m for m in caller.messages() if m.is_response]
    assert [m.status for m in responses] == [503] * 3, [m.start for m in responses]
    assert {m.header("Retry-After") for m in responses} == {"5"}
    tags = {(m.header("To") or "").rsplit("tag=", 1)[-1] for m in responses}
    assert len(tags) == 1 and "" not in tags, tags
    for m in responses:
        assert A_REAL.lstrip("+") not in (m.header("P-Asserted-Identity") or "")


# --------------------------------------------------------------- 8. PRACK / 100rel


def test_early_media_with_prack(sipp, sipmask_factory):
    """Reliable 183 with SDP crosses; the caller's PRACK reaches the callee with RAck naming
    the callee's own INVITE CSeq (RFC 3262 §7.2); then 200, ACK, BYE."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_prack.xml", "uas_prack.xml")
    assert_sipp_ok(caller, callee)
    caller_msgs = caller.messages()
    early = _one(caller_msgs, "183", status=183)
    assert "100rel" in (early.header("Require") or ""), early.head
    assert early.header("RSeq"), early.head
    assert "m=audio" in early.body
    callee_msgs = callee.messages()
    invite = _one(callee_msgs, "INVITE", method="INVITE", request=True)
    assert "100rel" in (invite.header("Supported") or ""), invite.head
    prack = _one(callee_msgs, "PRACK", method="PRACK", request=True)
    rseq, rack_cseq, rack_method = (prack.header("RAck") or "").split()
    assert rseq == "1"  # the callee's RSeq
    assert rack_method == "INVITE"
    assert rack_cseq == invite.header("CSeq").split()[0], (prack.head, invite.head)
    # the caller's RAck named the caller's INVITE CSeq and sipmask's RSeq
    sent_prack = next(m for m in map(SipMsg.parse, _sent(caller)) if m.method == "PRACK" and not m.is_response)
    assert sent_prack.header("RAck").split()[0] == early.header("RSeq")
    _one(callee_msgs, "ACK", method="ACK", request=True)
    assert_isolated(caller, callee)


def _sent(peer) -> list[str]:
    from .conftest import sent_messages
    return sent_messages(peer.message_file)


# ------------------------------------------------------------- 9. re-INVITE hold/resume


def test_reinvite_hold_and_resume_both_ways(sipp, sipmask_factory):
    """Caller holds (a=sendonly -> a=recvonly); later the callee resumes with its own
    re-INVITE (a=sendrecv); both re-INVITEs arrive and are answered and ACKed."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_reinvite.xml", "uas_reinvite.xml")
    assert_sipp_ok(caller, callee)
    callee_msgs = callee.messages()
    invites = find(callee_msgs, method="INVITE", request=True)
    assert len(invites) == 2 and "a=sendonly" in invites[1].body
    assert invites[1].header("Call-ID") == invites[0].header("Call-ID")
    resume_ok = _one(callee_msgs, "200 to the resume re-INVITE", status=200, method="INVITE")
    assert "a=sendrecv" in resume_ok.body
    caller_msgs = caller.messages()
    hold_ok = [m for m in find(caller_msgs, status=200, method="INVITE") if "a=recvonly" in m.body]
    assert hold_ok, [m.start for m in caller_msgs]
    resume = _one(caller_msgs, "resume re-INVITE", method="INVITE", request=True)
    assert "a=sendrecv" in resume.body
    assert len(find(caller_msgs, method="ACK", request=True)) == 1
    assert len(find(callee_msgs, method="ACK", request=True)) == 2
    assert_isolated(caller, callee)


# ------------------------------------------------------------------------ 10. UPDATE


def test_update_with_sdp_after_answer(sipp, sipmask_factory):
    """The caller's mid-call UPDATE with an SDP offer reaches the callee; its 200 with an
    SDP answer comes back."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_update.xml", "uas_update.xml")
    assert_sipp_ok(caller, callee)
    update = _one(callee.messages(), "UPDATE", method="UPDATE", request=True)
    assert "m=audio" in update.body
    ok = _one(caller.messages(), "200 UPDATE", status=200, method="UPDATE")
    assert "m=audio" in ok.body
    assert_isolated(caller, callee)


# ------------------------------------------------------------------ 11. BYE from callee


def test_bye_from_callee(sipp, sipmask_factory):
    """The callee hangs up: its BYE reaches the caller, whose 200 goes back."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_bye_wait.xml", "uas_bye.xml")
    assert_sipp_ok(caller, callee)
    _one(caller.messages(), "BYE", method="BYE", request=True)
    _one(callee.messages(), "200 BYE", status=200, method="BYE")
    assert_isolated(caller, callee)


# ------------------------------------------------------------------------- 12. INFO


def test_info_dtmf_relay_mid_call(sipp, sipmask_factory):
    """The caller's INFO (application/dtmf-relay) reaches the callee intact and gets 200."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_info.xml", "uas_info.xml")
    assert_sipp_ok(caller, callee)
    info = _one(callee.messages(), "INFO", method="INFO", request=True)
    assert (info.header("Content-Type") or "").startswith("application/dtmf-relay")
    assert "Signal=5" in info.body and "Duration=160" in info.body
    _one(caller.messages(), "200 INFO", status=200, method="INFO")
    assert_isolated(caller, callee)


# ------------------------------------------------------------------ 13. TCP caller leg


def test_tcp_caller_udp_callee(sipp, sipmask_factory):
    """Caller over TCP, callee over UDP: the basic flow completes across transports."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_basic.xml", "uas_basic.xml",
                               transport="tcp")
    assert_sipp_ok(caller, callee)
    invite = _one(callee.messages(), "INVITE", method="INVITE", request=True)
    assert invite.header("Via").startswith("SIP/2.0/UDP"), invite.head
    assert_isolated(caller, callee)


def test_tcp_caller_receives_bye_from_udp_callee(sipp, sipmask_factory):
    """sipmask sends an in-dialog request (BYE) back to a TCP caller."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_bye_wait.xml", "uas_bye.xml",
                               transport="tcp")
    assert_sipp_ok(caller, callee)
    bye = _one(caller.messages(), "BYE", method="BYE", request=True)
    assert bye.header("Via").startswith("SIP/2.0/TCP"), bye.head
    assert_isolated(caller, callee)


# ------------------------------------------------------------------ 14. gateway failover


def test_failover_after_503(sipp, sipmask_factory):
    """Gateways [503, callee]: the first answers 503, the call completes through the second."""
    broken = sipp.start_uas("uas_503.xml", name="gateway-503", ip=SPARE_IP)
    callee = sipp.start_uas("uas_basic.xml")
    sm = sipmask_factory([(B_PREFIX, [_route_to(SPARE_IP, broken.port),
                                      _route_to(CALLEE_IP, callee.port)])])
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    sipp.wait(broken)
    assert_sipp_ok(caller, callee, broken)
    assert not find(caller.messages(), status=503)
    _one(broken.messages(), "ACK to the 503", method="ACK", request=True)
    _assert_b_leg_identity(callee.messages())
    assert_isolated(caller, callee, broken)


def test_failover_after_dead_gateway(sipp, sipmask_factory):
    """Gateways [nothing listening, callee]: the call completes through the second."""
    dead_port = free_port(SPARE_IP)
    callee = sipp.start_uas("uas_basic.xml")
    sm = sipmask_factory([(B_PREFIX, [_route_to(SPARE_IP, dead_port),
                                      _route_to(CALLEE_IP, callee.port)])],
                         calls={"failover_timeout_s": 1.0})
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    _assert_b_leg_identity(callee.messages())
    assert_isolated(caller, callee)

def test_icmp_port_unreachable_fails_over_at_once(sipp, sipmask_factory):
    """Gateways [closed port, callee] with a failover timer far away (15 s): the first INVITE
    draws ICMP port unreachable, which fails its transaction at once (RFC 3261 §17.1.1.2 /
    §18.4, a transport error), so the call goes to the second gateway without waiting."""
    dead_port = free_port(SPARE_IP)
    callee = sipp.start_uas("uas_basic.xml")
    sm = sipmask_factory([(B_PREFIX, [_route_to(SPARE_IP, dead_port),
                                      _route_to(CALLEE_IP, callee.port)])],
                         calls={"failover_timeout_s": 15.0}, log_level="info")
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL, timeout_s=12)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    events = sm.log_events()
    assert [e for e in events if e.get("event") == "call.failover"], "no failover was logged"
    answered = [e for e in events if e.get("event") == "call.answered"]
    # the path taken, not a speed: the 15 s failover timer never fired
    assert answered and answered[0]["setup_ms"] < 5000, answered
    assert_isolated(caller, callee)

# 15. untrusted sources: out of scope here (only loopback, which is trusted); unit-tested.


# ------------------------------------------------------------------ 14. a late caller ACK


def test_late_ack_from_the_caller_keeps_the_callee_connected(sipp, sipmask_factory):
    """RFC 3261 §13.3.1.4: the caller ACKs 700 ms late, so the callee retransmits its 2xx to
    sipmask meanwhile. Those retransmissions are held until the caller's ACK, never taken for
    a stray 2xx (which would ACK and BYE the callee while the caller stays connected)."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_late_ack.xml", "uas_basic.xml", calls=3)
    assert_sipp_ok(caller, callee)
    callee_sent = [SipMsg.parse(m) for m in _sent(callee)]
    ok_sent = [m for m in callee_sent if m.is_response and m.status == 200 and m.method == "INVITE"]
    assert len(ok_sent) > 3, "the callee never retransmitted its 2xx: the test did not test anything"
    callee_msgs = callee.messages()
    # per B-leg call: the ACK arrives before the only BYE (the caller's, relayed)
    by_call: dict[str, list[str]] = {}
    for m in callee_msgs:
        if not m.is_response:
            by_call.setdefault(m.header("Call-ID") or "", []).append(m.method)
    assert len(by_call) == 3, by_call
    for methods in by_call.values():
        assert methods.count("BYE") == 1 and "ACK" in methods, methods
        assert methods.index("ACK") < methods.index("BYE"), methods
    byes = find(callee_msgs, method="BYE", request=True)
    caller_byes = [m for m in map(SipMsg.parse, _sent(caller)) if m.method == "BYE" and not m.is_response]
    assert len(byes) == len(caller_byes) == 3
    assert not find(caller.messages(), method="BYE", request=True), "sipmask hung up the caller"
    assert_isolated(caller, callee)


# ------------------------------------------------------------- RFC 4028 §7.4: 422, then 200

def test_422_from_the_callee_is_retried_in_the_same_b_leg_attempt(sipp, sipmask_factory):
    """The callee answers 422 (Min-SE: 3600, above the 1800 s sipmask asks for by default, no
    SDP): sipmask sends the INVITE again with the same Call-ID and From tag, CSeq + 1,
    Session-Expires and Min-SE 3600 (refresher kept); the callee's 200 then
    carries a Session-Expires that does not parse: the call is answered and ends normally."""
    sm, caller, callee = _call(sipp, sipmask_factory, "uac_basic.xml", "uas_422.xml")
    assert_sipp_ok(caller, callee)
    invites = find(callee.messages(), method="INVITE", request=True)
    assert len(invites) == 2, [m.start for m in invites]
    first, retry = invites
    assert first.header("Call-ID") == retry.header("Call-ID")
    assert (first.header("From") or "").split("tag=")[1] == (retry.header("From") or "").split("tag=")[1]
    assert [m.header("CSeq") for m in invites] == ["1 INVITE", "2 INVITE"]
    assert retry.header("Session-Expires") == "3600;refresher=uas" and retry.header("Min-SE") == "3600"
    caller_msgs = caller.messages()
    assert not find(caller_msgs, status=422)
    assert len(find(caller_msgs, status=200, method="INVITE")) == 1
    assert_isolated(caller, callee)
