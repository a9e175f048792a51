"""Media anchored through a real rtpengine (userspace, no kernel module) between real SIPp
peers: each party's SDP names only rtpengine, RTP from both parties reaches rtpengine's ports
(which they learned from nowhere but that SDP), the session is deleted after BYE, and a new
call gets 503 while no rtpengine answers."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bencode2
import pytest

from proxy.media.bdecode import bdecode

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

pytestmark = pytest.mark.e2e

RTPENGINE = shutil.which("rtpengine")
_PORTS = 40  # RTP/RTCP ports for rtpengine: two per leg and call, a few calls


class Rtpengine:
    """An rtpengine process on loopback and a blocking ng client for the test's questions."""

    def __init__(self, workdir: Path) -> None:
        assert RTPENGINE is not None, "rtpengine not installed (scripts/system-deps.sh)"
        self.ng_port = free_port(SIPMASK_IP)
        self.port_min = free_port(SIPMASK_IP, span=_PORTS)
        self.port_max = self.port_min + _PORTS - 1
        self.log = workdir / "rtpengine.log"
        self._serial = 0
        self.proc = subprocess.Popen(
            [RTPENGINE, "--config-file=none", f"--interface={SIPMASK_IP}",
             f"--listen-ng={SIPMASK_IP}:{self.ng_port}",
             f"--listen-cli={SIPMASK_IP}:{free_port(SIPMASK_IP)}",
             "--foreground", "--log-stderr", "--log-level=6", "--table=-1",
             f"--port-min={self.port_min}", f"--port-max={self.port_max}",
             "--delete-delay=0", "--num-threads=2"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"rtpengine exited: {self.log.read_text(errors='replace')}")
            try:
                if self.ask({"command": "ping"}, timeout_s=0.2).get(b"result") == b"pong":
                    return
            except TimeoutError:
                continue
        raise AssertionError("rtpengine did not answer ping")

    def ask(self, command: dict[str, Any], timeout_s: float = 1.0) -> dict[bytes, Any]:
        self._serial += 1
        cookie = f"t{self._serial}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout_s)
            s.sendto(cookie + b" " + bencode2.bencode(command), (SIPMASK_IP, self.ng_port))
            try:
                data = s.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                raise TimeoutError from None
        reply = bdecode(data.partition(b" ")[2])
        assert isinstance(reply, dict)
        return reply

    def calls(self) -> list[bytes]:
        calls = self.ask({"command": "list"}).get(b"calls", [])
        assert isinstance(calls, list)
        return calls

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def rtpengine(tmp_path: Path) -> Iterator[Rtpengine]:
    engine = Rtpengine(tmp_path)
    yield engine
    engine.stop()


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
