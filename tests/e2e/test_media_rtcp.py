"""What RTCP crosses rtpengine with the options sipmask sends (proxy/media/bridge.py
``PRIVACY_OPTIONS``): a party whose RTCP SDES CNAME carries its number and address (as
softphones do: ``sip:+1555...@<IP>``) sends RTP and RTCP through a real rtpengine, and the
other party's sockets record everything that arrives. With ``generate RTCP = on`` nothing of
the CNAME arrives; without it (the control) the CNAME arrives verbatim, which is why the
option is always sent. But a compound without a sender or receiver report (SDES alone, or the
BYE + SDES baresip sends at hang-up) crosses rtpengine whatever it is told: the last test shows
it, and it is why sipmask tells each party to send its RTCP to the discard port
(proxy/media/rtcp.py). The evidence for docs/media.md."""

from __future__ import annotations

import re
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from proxy.media.bridge import PRIVACY_OPTIONS

from .conftest import CALLEE_IP, CALLER_IP
from .rtpengine import Rtpengine, rtpengine  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

NUMBER = "+15551230001"
CNAME = f"sip:{NUMBER}@{CALLER_IP}".encode()


def sdp(ip: str, port: int) -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n").encode()


def rtp(seq: int, ssrc: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 8, seq & 0xFFFF, seq * 160, ssrc) + b"\xd5" * 160


def sdes(ssrc: int) -> bytes:
    """RFC 3550 §6.5 SDES with one CNAME item (padded to 32 bits)."""
    item = bytes([1, len(CNAME)]) + CNAME + b"\x00"
    item += b"\x00" * (-(4 + len(item)) % 4)
    chunk = struct.pack("!I", ssrc) + item
    return struct.pack("!BBH", 0x81, 202, len(chunk) // 4) + chunk


def bye(ssrc: int) -> bytes:
    """RFC 3550 §6.6 BYE of one source, no reason."""
    return struct.pack("!BBHI", 0x81, 203, 1, ssrc)


def rtcp_sr_sdes(ssrc: int, packets: int) -> bytes:
    """RFC 3550 §6.4.1 sender report + SDES: the compound a party sends while it talks."""
    ntp = int((time.time() + 2208988800) * 2**32)
    sr = struct.pack("!BBHIQIII", 0x80, 200, 6, ssrc, ntp, packets * 160, packets, packets * 160)
    return sr + sdes(ssrc)


COMPOUNDS = {
    "SR+SDES": rtcp_sr_sdes,
    "RR+SDES+BYE": lambda ssrc, _: struct.pack("!BBHI", 0x80, 201, 1, ssrc) + sdes(ssrc) + bye(ssrc),
    "SDES": lambda ssrc, _: sdes(ssrc),
    "BYE+SDES": lambda ssrc, _: bye(ssrc) + sdes(ssrc),  # baresip's at hang-up (no report)
}


class Party:
    """An RTP/RTCP socket pair on ``ip``; records every datagram that arrives."""

    def __init__(self, ip: str) -> None:
        for _ in range(50):
            self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.rtp.bind((ip, 0))
            port = self.rtp.getsockname()[1]
            self.rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                self.rtcp.bind((ip, port + 1))
                break
            except OSError:
                self.rtp.close()
                self.rtcp.close()
        self.ip, self.port = ip, port
        for s in (self.rtp, self.rtcp):
            s.setblocking(False)
        self.received: list[tuple[str, bytes]] = []

    def collect(self) -> None:
        for name, s in (("rtp", self.rtp), ("rtcp", self.rtcp)):
            while True:
                try:
                    self.received.append((name, s.recv(2048)))
                except BlockingIOError:
                    break

    def close(self) -> None:
        self.rtp.close()
        self.rtcp.close()


def relay_port(body: str) -> tuple[str, int]:
    address = re.search(r"^c=IN IP4 (\S+)", body, re.M)
    port = re.search(r"^m=audio (\d+) ", body, re.M)
    assert address and port, body
    return address.group(1), int(port.group(1))


@pytest.fixture
def parties() -> Iterator[tuple[Party, Party]]:
    a, b = Party(CALLER_IP), Party(CALLEE_IP)
    yield a, b
    a.close()
    b.close()


def call_through(engine: Rtpengine, a: Party, b: Party, options: dict[str, Any],
                 seconds: float = 2.5, compound: str = "SR+SDES") -> None:
    """Offer (A), answer (B), then A sends RTP + RTCP with its CNAME, B sends RTP; B records."""
    call = {"call-id": f"rtcp-{time.monotonic_ns()}", "from-tag": "ta", "to-tag": "tb"}
    offer = engine.ask({"command": "offer", **call, "sdp": sdp(a.ip, a.port), **options})
    answer = engine.ask({"command": "answer", **call, "sdp": sdp(b.ip, b.port), **options})
    to_b = relay_port(offer[b"sdp"].decode())  # where B sends
    to_a = relay_port(answer[b"sdp"].decode())  # where A sends
    end = time.monotonic() + seconds
    seq = 0
    while time.monotonic() < end:
        seq += 1
        a.rtp.sendto(rtp(seq, 0x1111), to_a)
        b.rtp.sendto(rtp(seq, 0x2222), to_b)
        if seq % 25 == 1:
            a.rtcp.sendto(COMPOUNDS[compound](0x1111, seq), (to_a[0], to_a[1] + 1))
        time.sleep(0.02)
        b.collect()
    time.sleep(0.2)
    b.collect()
    engine.ask({"command": "delete", "call-id": call["call-id"]})


def test_generated_rtcp_carries_neither_number_nor_address(
        rtpengine: Rtpengine, parties: tuple[Party, Party]) -> None:
    a, b = parties
    call_through(rtpengine, a, b, dict(PRIVACY_OPTIONS))
    assert any(kind == "rtp" for kind, _ in b.received), "RTP crossed the relay"
    everything = b"".join(data for _, data in b.received)
    for leak in (NUMBER.encode(), NUMBER[1:].encode(), CALLER_IP.encode()):
        assert leak not in everything, f"{leak!r} reached the other party"


def test_control_without_generate_rtcp_the_cname_passes_through(
        rtpengine: Rtpengine, parties: tuple[Party, Party]) -> None:
    a, b = parties
    options = {k: v for k, v in PRIVACY_OPTIONS.items() if k != "generate RTCP"}
    call_through(rtpengine, a, b, options)
    rtcp = b"".join(data for kind, data in b.received if kind == "rtcp")
    assert CNAME in rtcp, "without generate RTCP, rtpengine forwards the party's SDES as is"


@pytest.mark.parametrize("compound", COMPOUNDS)
def test_rtpengine_forwards_only_the_compounds_without_a_report(
        rtpengine: Rtpengine, parties: tuple[Party, Party], compound: str) -> None:
    """rtpengine 10.5's ``generate RTCP`` discards a compound holding an SR or RR and forwards
    the rest (its ``sink_common`` runs for SR, RR and XR only), number and address included."""
    a, b = parties
    call_through(rtpengine, a, b, dict(PRIVACY_OPTIONS), seconds=1.2, compound=compound)
    rtcp = b"".join(data for kind, data in b.received if kind == "rtcp")
    reported = compound.startswith(("SR", "RR"))
    assert (CNAME in rtcp) is not reported, \
        f"{compound}: {'forwarded' if CNAME in rtcp else 'consumed'} by rtpengine"
