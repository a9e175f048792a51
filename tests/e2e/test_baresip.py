"""Two real softphones (baresip, as a new user would try sipmask) call each other through
sipmask with media anchored through a real rtpengine. A raw capture on ``lo`` keeps every
packet each phone's address receives (SIP, SDP, RTP, RTCP), and the test checks all of those
bytes: no spelling of the other party's real number, not its IP address, not its device
(baresip names itself in User-Agent and SDP), every packet from sipmask's or rtpengine's
address only; and audio really flowed both ways (RTP counted at each phone, the WAV each
phone recorded is not empty).

Softphones differ from SIPp in what they put where on their own: the SDP ``o=`` line and
RTCP SDES CNAME carry the phone's address and account, which is what made the issue."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.media.rtcp import DISCARD_PORT

from .baresip import Baresip, LoopbackCapture, Packet, capture_possible
from .conftest import (
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    B_REAL,
    CALLEE_IP,
    CALLER_IP,
    DISTINCT_IPS,
    SIPMASK_IP,
    free_port,
    number_forms,
)
from .rtpengine import Rtpengine, rtpengine  # noqa: F401 - the fixture
from .test_media import media_toml

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not (DISTINCT_IPS and capture_possible()),
                       reason="needs 127.0.0.2/.3 and CAP_NET_RAW (root, as CI runs)"),
]

TALK_S = 7.0  # long enough for each phone's first RTCP report (RFC 3550: ~5 s at start)


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[tuple[Baresip, Baresip]]:
    made = []
    for name, number, ip in (("alice", A_REAL, CALLER_IP), ("bob", B_REAL, CALLEE_IP)):
        rtp = free_port(ip, span=22)
        rtp += rtp % 2  # baresip rounds the range's start down to an even port
        phone = Baresip(name, number, ip, tmp_path / name, free_port(ip), free_port(ip),
                        (rtp, rtp + 19))
        made.append(phone)
    try:
        for phone in made:
            phone.start()
        yield made[0], made[1]
    finally:
        for phone in made:
            phone.stop()


def is_rtp(payload: bytes) -> bool:
    return len(payload) >= 12 and payload[0] >> 6 == 2 and (payload[1] & 0x7F) in (0, 8)


def is_rtcp(payload: bytes) -> bool:
    return len(payload) >= 8 and payload[0] >> 6 == 2 and 200 <= payload[1] <= 204


def leaks(received: list[Packet], other: Baresip, allowed_ports: set[int]) -> list[str]:
    """What in ``received`` names ``other``: its number in any spelling, its IP address, its
    device, or a packet that came from anywhere but sipmask's SIP port or rtpengine's ports
    (so never from ``other``'s own sockets)."""
    problems = []
    forms = [f.encode() for f in number_forms(other.number)]
    for packet in received:
        label = f"{packet.proto} {packet.src[0]}:{packet.src[1]} -> :{packet.dst[1]} " \
                f"{packet.payload[:40]!r}"
        if packet.src[0] != SIPMASK_IP or packet.src[1] not in allowed_ports:
            problems.append(f"{label}: came from {packet.src}, not sipmask/rtpengine")
        for form in forms:
            if form in packet.payload:
                problems.append(f"{label}: carries {other.name}'s number as {form!r}")
        if other.ip.encode() in packet.payload:
            problems.append(f"{label}: carries {other.name}'s IP {other.ip}")
        if b"baresip" in packet.payload.lower():
            problems.append(f"{label}: names {other.name}'s device (baresip)")
    return problems


def test_two_softphones_through_sipmask_and_rtpengine_see_nothing_of_each_other(
        phones: tuple[Baresip, Baresip], sipmask_factory: object,
        rtpengine: Rtpengine) -> None:
    alice, bob = phones
    capture = LoopbackCapture([alice, bob])
    capture.start()
    make = sipmask_factory  # type: ignore[assignment]
    sm = make([(B_PREFIX, [f"udp:{bob.ip}:{bob.sip_port}"])],  # type: ignore[operator]
              extra_toml=media_toml(rtpengine.ng_port))
    try:
        alice.command("dial", f"sip:{A_VIRTUAL}@{SIPMASK_IP}:{sm.udp_port}")
        bob.wait_for("CALL_ESTABLISHED", 15)
        alice.wait_for("CALL_ESTABLISHED", 15)
        time.sleep(TALK_S)
        alice.command("hangup")
        bob.wait_for("CALL_CLOSED", 10)
        alice.wait_for("CALL_CLOSED", 10)
        time.sleep(0.3)
    finally:
        capture.stop()

    to_alice, to_bob = capture.to(alice), capture.to(bob)
    allowed = {sm.udp_port, *range(rtpengine.port_min, rtpengine.port_max + 1)}
    problems = leaks(to_alice, bob, allowed) + leaks(to_bob, alice, allowed)
    assert not problems, "\n".join(problems[:40]) + f"\n({len(problems)} in all)"

    for phone, received in ((alice, to_alice), (bob, to_bob)):
        sip = [p.payload for p in received if p.dst[1] == phone.sip_port]
        rtp = [p for p in received if p.dst[1] != phone.sip_port and is_rtp(p.payload)]
        rtcp = [p for p in received if p.dst[1] != phone.sip_port and is_rtcp(p.payload)]
        assert any(m.startswith(b"SIP/2.0 200") or m.startswith(b"INVITE ") for m in sip), \
            f"{phone.name} got the call's signalling"
        empty = [line for m in sip for line in m.split(b"\r\n\r\n")[0].split(b"\r\n")
                 if re.match(rb"^[A-Za-z-]+:\s*,", line)]
        assert not empty, f"{phone.name} got a list header with an empty element: {empty}"
        assert len(rtp) > 100, f"{phone.name} received {len(rtp)} RTP packets in {TALK_S} s"
        assert all(rtpengine.port_min <= p.src[1] <= rtpengine.port_max for p in rtp), \
            f"{phone.name}'s RTP came from rtpengine's ports"
        heard = sorted(phone.workdir.glob("*dec*.wav"))
        assert heard and heard[0].stat().st_size > 8000, \
            f"{phone.name} decoded what it heard (sndfile dump: {heard})"
        phone.rtcp_seen = len(rtcp)  # type: ignore[attr-defined]
        # rtpengine forwards an RTCP compound without a report (baresip's BYE + SDES at hang-up)
        # whatever it is told, so each phone is told to send its RTCP to the discard port
        # (proxy/media/rtcp.py): none may reach rtpengine, however the BYE and the hang-up race
        sent = [p for p in capture.sent_by(phone) if is_rtcp(p.payload)]
        assert sent, f"{phone.name} sent RTCP (its reports, its BYE at hang-up)"
        astray = [p for p in sent if p.dst[1] != DISCARD_PORT]
        assert not astray, f"{phone.name}'s RTCP went to {sorted({p.dst for p in astray})}, " \
            f"not the discard port: rtpengine would forward a compound without a report"

    invite = next(p.payload for p in to_bob if p.payload.startswith(b"INVITE "))
    assert f"c=IN IP4 {SIPMASK_IP}".encode() in invite, "bob's offer names rtpengine only"
