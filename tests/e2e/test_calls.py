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
        assert CALLER_IP not in o_line and CALLEE_IP not in o_line, o_line
    assert len(find(callee_msgs, method="ACK", request=True)) == 5
    assert len(find(callee_msgs, method="BYE", request=True)) == 5
    assert_isolated(caller, callee)
