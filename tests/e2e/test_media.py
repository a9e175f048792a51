"""Media anchored through a real rtpengine (userspace, no kernel module) between real SIPp
peers: each party's SDP names only rtpengine, RTP from both parties reaches rtpengine's ports
(which they learned from nowhere but that SDP), the session is deleted after BYE, and a new
call gets 503 while no rtpengine answers."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    CALLEE_IP,
    CALLER_IP,
    SIPMASK_IP,
    assert_isolated,
    assert_sipp_ok,
    find,
    free_port,
)
from .rtpengine import Rtpengine, rtpengine  # noqa: F401 - the fixture

pytestmark = pytest.mark.e2e

class Watcher(threading.Thread):
    """Asks rtpengine about its calls every 100 ms while a call runs: the last ``query`` of
    each call seen (they are gone once deleted)."""

    def __init__(self, engine: Rtpengine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.seen: dict[bytes, dict[bytes, Any]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                for call_id in self.engine.calls():
                    reply = self.engine.ask({"command": "query", "call-id": call_id})
                    if reply.get(b"result") == b"ok":
                        self.seen[call_id] = reply
            except TimeoutError:
                pass
            self.done.wait(0.1)


def media_toml(engine_port: int, **extra: str) -> str:
    lines = ["[media]", 'mode = "rtpengine"', f'rtpengines = ["{SIPMASK_IP}:{engine_port}"]',
             "timeout_s = 0.3", "retries = 1"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def sdp_media(body: str) -> tuple[str, int]:
    """(connection address, first audio port) of an SDP body."""
    address = re.search(r"^c=IN IP4 (\S+)", body, re.M)
    port = re.search(r"^m=audio (\d+) ", body, re.M)
    assert address and port, body
    return address.group(1), int(port.group(1))


def ingress_packets(query: dict[bytes, Any]) -> dict[bytes, int]:
    """RTP packets rtpengine received from each party (tag) of a call, per its ``query``."""
    out: dict[bytes, int] = {}
    for tag, info in query[b"tags"].items():
        out[tag] = sum(stream[b"stats"][b"packets"]
                       for media in info.get(b"medias", [])
                       for stream in media.get(b"streams", [])[:1])  # the RTP stream, not RTCP
    return out


def test_both_parties_see_only_rtpengine_and_rtp_flows_through_it(
        sipp: Any, sipmask_factory: Any, rtpengine: Rtpengine) -> None:
    callee = sipp.start_uas("uas_media.xml", calls=1)
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])],
                         extra_toml=media_toml(rtpengine.ng_port))
    watcher = Watcher(rtpengine)
    watcher.start()
    try:
        caller = sipp.run_uac("uac_media.xml", sm.udp_target, service=A_VIRTUAL)
        sipp.wait(callee)
    finally:
        watcher.done.set()
        watcher.join(5)
    assert_sipp_ok(caller, callee)
    assert_isolated(caller, callee)

    invite = find(callee.messages(), method="INVITE", request=True)[0]
    ok = [m for m in caller.messages() if m.is_response and m.status == 200
          and m.method == "INVITE"][0]
    offered = sdp_media(invite.body)
    answered = sdp_media(ok.body)
    sent_offer = sdp_media(find_sent(caller, "INVITE"))
    sent_answer = sdp_media(find_sent(callee, "200"))
    for seen, own in ((offered, sent_offer), (answered, sent_answer)):
        assert seen[0] == SIPMASK_IP, "c= names rtpengine's interface"
        assert rtpengine.port_min <= seen[1] <= rtpengine.port_max, "m= is an rtpengine port"
        assert seen[1] != own[1]
    assert CALLER_IP not in invite.body and CALLEE_IP not in ok.body

    (call_id, query), = watcher.seen.items()
    packets = ingress_packets(query)
    assert len(packets) == 2 and all(n > 0 for n in packets.values()), \
        f"RTP from both parties reached rtpengine: {packets}"
    assert call_id not in rtpengine.calls(), "the session is deleted after BYE"


def find_sent(peer: Any, start: str) -> str:
    """The body of the first message ``peer`` sent whose start line contains ``start``."""
    from .conftest import sent_messages

    for raw in sent_messages(peer.message_file):
        head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
        if start in head.split("\n", 1)[0]:
            return body
    raise AssertionError(f"{peer.name} sent no {start}")


def test_no_rtpengine_answers_503_and_the_call_is_not_bridged(
        sipp: Any, sipmask_factory: Any, tmp_path: Path) -> None:
    callee = sipp.start_uas("uas_basic.xml", calls=1, timeout_s=8)
    nothing = free_port(SIPMASK_IP)  # nothing listens there
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])],
                         extra_toml=media_toml(nothing, retry_after_s="7"))
    csv = tmp_path / "calls.csv"
    csv.write_text(f"SEQUENTIAL\n{A_REAL};{A_VIRTUAL};\n{A_REAL};{A_VIRTUAL};\n")
    caller = sipp.run_uac("uac_unavailable.xml", sm.udp_target, service="unused", calls=2,
                          extra=["-inf", str(csv)])
    assert_sipp_ok(caller)
    finals = [m for m in caller.messages() if m.is_response and (m.status or 0) >= 200]
    assert [(m.status, m.header("Retry-After")) for m in finals] == [(503, "7")] * 2
    assert not find(callee.messages(), method="INVITE", request=True), "no B leg"
    assert "Traceback" not in sm.stderr()


def test_hold_and_resume_reinvites_go_through_rtpengine_both_ways(
        sipp: Any, sipmask_factory: Any, rtpengine: Rtpengine) -> None:
    """The caller's hold (a=sendonly) and the callee's resume re-INVITE, each offer and each
    answer: every SDP either party receives names rtpengine, never the other party."""
    callee = sipp.start_uas("uas_reinvite.xml", calls=1)
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])],
                         extra_toml=media_toml(rtpengine.ng_port))
    caller = sipp.run_uac("uac_reinvite.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    assert_isolated(caller, callee)
    for peer, other_ip in ((caller, CALLEE_IP), (callee, CALLER_IP)):
        bodies = [m.body for m in peer.messages() if "m=audio" in m.body]
        assert len(bodies) == 3, "the initial SDP and both re-INVITEs' offer or answer"
        for body in bodies:
            address, port = sdp_media(body)
            assert address == SIPMASK_IP and rtpengine.port_min <= port <= rtpengine.port_max
            assert other_ip not in body
    hold = [m for m in find(callee.messages(), method="INVITE", request=True)][1]
    assert "a=sendonly" in hold.body, "rtpengine keeps the direction of the hold"
    assert rtpengine.calls() == []
