"""Floods through a real ``sipmask run``: one source cannot take capacity from the others
(per-source rate limits, proxy/transport/pike.py), and an unknown-caller flood that never
ACKs draws one answer per INVITE, not one plus Timer G's retransmissions."""

from __future__ import annotations

import re
import time
import urllib.request

import pytest

from .conftest import (
    A_VIRTUAL,
    B_PREFIX,
    CALLEE_IP,
    DISTINCT_IPS,
    assert_sipp_ok,
    find,
)

pytestmark = pytest.mark.e2e

#: the flooding source: its own loopback address (127.0.0.0/8 is all loopback on Linux)
FLOOD_IP = "127.0.0.5"


def _metrics(sm) -> dict[str, float]:
    """``name{labels}`` -> value of every sample on /metrics."""
    with urllib.request.urlopen(sm.api_url + "/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


@pytest.mark.skipif(not DISTINCT_IPS, reason="needs distinct loopback addresses")
def test_a_flood_from_one_source_with_a_paired_number_leaves_other_sources_unharmed(sipp, sipmask_factory):
    """127.0.0.5 floods with the paired caller's number at 150 calls/s while 127.0.0.2 places
    30 calls at 4/s (8 new requests a second: INVITE and BYE, under the limit of 20): every
    good call completes; the flood gets 503 past its rate."""
    callee = sipp.start_uas("uas_basic.xml", calls=100_000, timeout_s=60)
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])], log_level="info",
                         sip_toml="source_rate = 20.0\nsource_burst = 20.0\ntrusted_sources = []")
    flood = sipp.start_uac("uac_flood.xml", sm.udp_target, service=A_VIRTUAL, name="flood",
                           ip=FLOOD_IP, calls=600, timeout_s=30, extra=["-r", "150", "-l", "400"])
    time.sleep(1.0)  # the flood is under way (its burst spent) before the good calls start
    good = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL, calls=30,
                        extra=["-r", "4", "-l", "10"], timeout_s=40)
    sipp.wait(flood, timeout_s=40)
    assert_sipp_ok(good)  # 0 failed calls from the other source
    assert len(find(good.messages(), status=200, method="INVITE")) == 30
    refused = [m for m in flood.messages() if m.is_response and m.status == 503]
    metrics = _metrics(sm)
    limited = metrics['sipmask_sip_source_limited_total{action="invite_503"}']
    assert limited >= 300, metrics  # most of the 600 flood INVITEs
    assert len(refused) >= 300
    assert {m.header("Retry-After") for m in refused} <= {"1"}
    dropped = metrics.get('sipmask_sip_source_limited_total{action="dropped"}', 0.0)
    bridged = metrics.get('sipmask_sip_events_total{event="calls"}', 0.0)
    print(f"flood: {limited:.0f} of 600 INVITEs refused with 503, {dropped:.0f} requests "
          f"dropped, {bridged:.0f} calls bridged in all (30 good)")


def test_an_unknown_caller_flood_that_never_acks_draws_one_answer_per_invite(sipp, sipmask_factory):
    """200 INVITEs from a caller with no pairing, never ACKed: 200 responses in all (the
    uniform 404 once each, no 100 Trying, no Timer G retransmissions), counted on /metrics
    4 s later, when Timer G would have re-sent each 404 three times (0.5, 1.5, 3.5 s)."""
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:5999"])], log_level="info")
    before = _metrics(sm).get('sipmask_sip_messages_total{kind="sent"}', 0.0)
    caller = sipp.run_uac("uac_noack.xml", sm.udp_target, service=A_VIRTUAL, number="+15550000001",
                          calls=200, extra=["-r", "100", "-l", "200"], timeout_s=30)
    assert_sipp_ok(caller)
    time.sleep(4.0)
    metrics = _metrics(sm)
    sent = metrics['sipmask_sip_messages_total{kind="sent"}'] - before
    assert sent == 200, metrics
    statuses = [m.status for m in caller.messages() if m.is_response]
    assert statuses.count(404) >= 200 and 100 not in statuses
    assert metrics['sipmask_sip_events_total{event="no_pairing"}'] == 200
