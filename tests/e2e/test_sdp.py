"""SDP and bodies through a real ``sipmask run`` (issue 15 "SDP whitelist in every mode",
issue 17 "the SDP sanitiser fails open"), asserting on every byte each SIPp peer received."""

from __future__ import annotations

import pytest

from .conftest import (
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    B_REAL,
    CALLEE_IP,
    assert_isolated,
    assert_sipp_ok,
    find,
    number_forms,
)

pytestmark = pytest.mark.e2e

_MARKERS = ("a=tool", "a=ssrc", "a=msid", "a=label", "\ni=", "text/plain", "multipart", "sipmask-e2e",
            "AlicePhone", "BobPhone", "call me back")


def test_dirty_multipart_offer_and_dirty_answer_cross_clean(sipp, sipmask_factory):
    """The caller's multipart INVITE (SDP with its number in o= + double space, s=, i=, a=tool,
    a=ssrc cname, a=label; a text/plain part with number and address) and the callee's 200 SDP
    (number in i=, a=ssrc, a=msid; a=tool): neither party receives any of it."""
    callee = sipp.start_uas("uas_dirty_sdp.xml")
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])])
    caller = sipp.run_uac("uac_dirty_sdp.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)

    for receiver, other_number in ((callee, A_REAL), (caller, B_REAL)):
        raw = receiver.received_text()
        assert raw, receiver.describe()
        for form in number_forms(other_number):
            assert form not in raw, f"{receiver.name} received {form!r}"
        for marker in _MARKERS:
            assert marker not in raw, f"{receiver.name} received {marker!r}"
    invite = find(callee.messages(), method="INVITE", request=True)[0]
    assert invite.header("Content-Type") == "application/sdp"
    assert int(invite.header("Content-Length") or -1) == len(invite.body.replace("\n", "\r\n")) or invite.body
    lines = invite.body.splitlines()
    assert lines[:3] == ["v=0", lines[1], "s=-"] and lines[1].startswith("o=- 53655765 2353687637 IN IP4 ")
    assert "m=audio" in invite.body and "a=rtpmap:0 PCMU/8000" in invite.body  # the media still crosses
    ok = find(caller.messages(), status=200, method="INVITE")[0]
    assert ok.body.splitlines()[:3] == ["v=0", ok.body.splitlines()[1], "s=-"] and "m=audio" in ok.body
    assert_isolated(caller, callee)
