"""A real rtpengine for the media tests: userspace forwarding (``--table=-1``, no kernel
module), on loopback, with its own ng, CLI and RTP ports, no config file, sessions deleted at
once (``--delete-delay=0``, so a test sees a deleted call gone); and a blocking ng client for the
tests' own questions (``list``, ``query``)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bencodepy  # type: ignore[import-untyped]
import pytest

from .conftest import SIPMASK_IP, free_port

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
            s.sendto(cookie + b" " + bencodepy.encode(command), (SIPMASK_IP, self.ng_port))
            try:
                data = s.recv(65535)
            except (TimeoutError, ConnectionRefusedError):
                raise TimeoutError from None
        reply = bencodepy.decode(data.partition(b" ")[2])
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
