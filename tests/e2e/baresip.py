"""Real softphones for the e2e tests: baresip (Debian ``baresip-core``) driven over its
``ctrl_tcp`` control interface, and a loopback packet capture that keeps every datagram and
segment a party's address receives (SIP, SDP, RTP, RTCP), so a test can check all of it.

Each baresip gets its own config directory: one account (its real number at its own loopback
address, no registration, auto answer), a sine tone as microphone, a WAV file as speaker,
G.711 only, and SIP/RTP bound to its address on ``lo`` (never another interface)."""

from __future__ import annotations

import json
import math
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BARESIP = shutil.which("baresip")
MODULES = Path("/usr/lib/baresip/modules")

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4  # sll_pkttype: on ``lo`` each packet is seen once outgoing, once incoming


def capture_possible() -> bool:
    """A raw AF_PACKET socket needs CAP_NET_RAW (root, as CI runs)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except (PermissionError, OSError):
        return False
    return True


@dataclass(frozen=True)
class Packet:
    proto: str  # "udp" | "tcp"
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


class LoopbackCapture(threading.Thread):
    """Every IPv4 UDP/TCP packet on ``lo`` to or from one of the ``phones``' ports (its SIP port
    and its RTP/RTCP range), whatever the address: baresip binds SIP to its own
    loopback address but sends RTP from unbound sockets (source 127.0.0.1), and rtpengine
    sends the media back to where it came from, so a phone's media arrives at 127.0.0.1."""

    def __init__(self, phones: list[Baresip]) -> None:
        super().__init__(daemon=True)
        self.owner: dict[int, str] = {}
        for phone in phones:
            self.owner[phone.sip_port] = phone.name
            for port in range(phone.rtp_ports[0], phone.rtp_ports[1] + 1):
                self.owner[port] = phone.name
        self.packets: list[Packet] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)

    def run(self) -> None:
        while not self._halt.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            frame, addr = self.sock.recvfrom(65535)
            if addr[2] != PACKET_OUTGOING:
                continue
            packet = self._parse(frame)
            if packet is not None:
                with self._lock:
                    self.packets.append(packet)

    def _parse(self, frame: bytes) -> Packet | None:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            return None
        ip = frame[14:]
        ihl = (ip[0] & 0x0F) * 4
        proto, src, dst = ip[9], ip[12:16], ip[16:20]
        if dst[0] != 127:
            return None
        total = struct.unpack("!H", ip[2:4])[0]
        segment = ip[ihl:total]
        if len(segment) < 4 or not any(port in self.owner
                                       for port in struct.unpack("!HH", segment[:4])):
            return None
        if proto == 17 and len(segment) >= 8:
            sport, dport = struct.unpack("!HH", segment[:4])
            return Packet("udp", (socket.inet_ntoa(src), sport), (socket.inet_ntoa(dst), dport),
                          segment[8:])
        if proto == 6 and len(segment) >= 20:
            sport, dport = struct.unpack("!HH", segment[:4])
            offset = (segment[12] >> 4) * 4
            return Packet("tcp", (socket.inet_ntoa(src), sport), (socket.inet_ntoa(dst), dport),
                          segment[offset:])
        return None

    def to(self, phone: Baresip) -> list[Packet]:
        with self._lock:
            return [p for p in self.packets if self.owner.get(p.dst[1]) == phone.name]

    def sent_by(self, phone: Baresip) -> list[Packet]:
        """What ``phone`` sent (from its SIP port or its RTP/RTCP range)."""
        with self._lock:
            return [p for p in self.packets if self.owner.get(p.src[1]) == phone.name
                    and self.owner.get(p.dst[1]) != phone.name]

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.sock.close()


def write_tone(path: Path, hz: int, seconds: int = 30) -> None:
    """A mono 8 kHz 16-bit WAV tone: the phone's microphone (aufile reads it in a loop)."""
    rate = 8000
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * n / rate)))
                      for n in range(rate * seconds))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


def _netstring(data: bytes) -> bytes:
    return str(len(data)).encode() + b":" + data + b","


@dataclass
class Baresip:
    """One baresip process: ``dial``, ``hangup``, and the events it reported."""

    name: str
    number: str
    ip: str
    workdir: Path
    sip_port: int
    ctrl_port: int
    rtp_ports: tuple[int, int]
    proc: subprocess.Popen[bytes] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    _ctrl: socket.socket | None = None
    _buffer: bytes = b""

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = [
            "poll_method epoll",
            f"net_interface {self.ip}",
            f"sip_listen {self.ip}:{self.sip_port}",
            f"module_path {MODULES}",
            *(f"module {m}.so" for m in ("g711", "aufile", "aubridge", "sndfile", "account",
                                          "menu", "ctrl_tcp")),
            f"ctrl_tcp_listen {self.ip}:{self.ctrl_port}",
            f"audio_source aufile,{self.workdir / 'voice.wav'}",
            f"audio_player aubridge,{self.name}",
            f"audio_alert aubridge,{self.name}-alert",
            f"snd_path {self.workdir}",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux no",
            "audio_path /usr/share/baresip",
        ]
        (self.workdir / "config").write_text("\n".join(config) + "\n")
        write_tone(self.workdir / "voice.wav", 440 if self.name == "alice" else 660)
        (self.workdir / "accounts").write_text(
            f"<sip:{self.number}@{self.ip}:{self.sip_port}>;regint=0;answermode=auto;"
            f"audio_codecs=PCMA,PCMU\n")

    def start(self) -> None:
        assert BARESIP, "baresip is not installed (scripts/system-deps.sh installs baresip-core)"
        self.write_config()
        log = open(self.workdir / "baresip.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([BARESIP, "-f", str(self.workdir), "-s"], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"baresip {self.name} exited: {self.log()[-3000:]}")
            try:
                self._ctrl = socket.create_connection((self.ip, self.ctrl_port), timeout=0.5)
                self._ctrl.setblocking(False)
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"baresip {self.name} control port never opened: {self.log()[-3000:]}")

    def command(self, command: str, params: str = "") -> None:
        assert self._ctrl is not None
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self._ctrl.setblocking(True)
        self._ctrl.sendall(_netstring(body))
        self._ctrl.setblocking(False)

    def poll(self) -> None:
        """Read what the control socket has: events and command replies."""
        assert self._ctrl is not None
        while True:
            try:
                chunk = self._ctrl.recv(65535)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buffer += chunk
        while b":" in self._buffer:
            size, _, rest = self._buffer.partition(b":")
            if not size.isdigit() or len(rest) < int(size) + 1:
                break
            payload, self._buffer = rest[:int(size)], rest[int(size) + 1:]
            try:
                self.events.append(json.loads(payload))
            except ValueError:
                continue

    def saw(self, event_type: str) -> bool:
        self.poll()
        return any(e.get("event") and e.get("type") == event_type for e in self.events)

    def wait_for(self, event_type: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.saw(event_type):
                return
            time.sleep(0.05)
        raise AssertionError(f"baresip {self.name} never reported {event_type}; events "
                             f"{[e.get('type') for e in self.events]}\n{self.log()[-4000:]}")

    def log(self) -> str:
        path = self.workdir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self._ctrl is not None:
            self._ctrl.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
