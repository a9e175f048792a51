"""SIPp processes: the callee (UAS) that stays up for the run and the caller (UAC) that drives it.

Each SIPp runs in its own directory (the files it names after its scenario land there), with a
control port: SIPp reads commands on that UDP port, which is how the runner changes the call
rate during a ramp (``cset rate N``) and stops a timed run (``q``: no new calls, let the
current ones finish; ``Q``: stop now).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EXIT_CODES", "Sipp", "SippError", "free_port", "find_sipp", "sipp_version"]

#: SIPp's exit statuses (sipp(1)).
EXIT_CODES = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    -1: "fatal error",
    255: "fatal error",
    254: "fatal error binding a socket",
}


class SippError(RuntimeError):
    """SIPp could not be started, or exited at start-up."""


def find_sipp(explicit: str | None = None) -> str:
    path = explicit or shutil.which("sipp")
    if not path:
        raise SippError("sipp not found: install SIPp (Debian/Ubuntu: apt-get install sip-tester) "
                        "or pass --sipp PATH")
    return path


def sipp_version(sipp: str) -> str:
    """``v3.6.1-SCTP-PCAP-RTPSTREAM`` or '' if SIPp does not say."""
    try:
        out = subprocess.run([sipp, "-v"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for word in out.split():
        if word.startswith("v") and word[1:2].isdigit():
            return word.rstrip(".")
    return ""


_handed_out: set[int] = set()


def free_port(ip: str = "127.0.0.1", span: int = 1) -> int:
    """A port free for UDP and TCP on ``ip`` (and the ``span - 1`` ports after it).

    Bind-and-release, so another program may still take it before we do; never the same port
    twice in this process, since the kernel readily hands a released port out again.
    """
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
            base = probe.getsockname()[1]
        if base + span > 65535 or _handed_out.intersection(range(base, base + span)):
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + span):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(family, kind)
                    socks.append(s)
                    s.bind((ip, port))
            _handed_out.update(range(base, base + span))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SippError(f"no free port on {ip}")


@dataclass
class Sipp:
    """One SIPp process. ``args`` are the scenario-specific arguments; the common ones
    (addresses, control port, transport, traces) are added by :meth:`start`."""

    sipp: str
    name: str  # "uac" or "uas": also the directory name
    scenario: Path
    ip: str
    port: int
    workdir: Path
    transport: str = "udp"
    args: Sequence[str] = ()
    remote: str | None = None  # HOST:PORT for a caller
    control_port: int = 0
    media_port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    command: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dir = self.workdir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stat_csv = self.dir / "stat.csv"
        self.errors_log = self.dir / "errors.log"
        self.output = self.dir / "sipp.out"

    def build_command(self) -> list[str]:
        self.control_port = self.control_port or free_port(self.ip)
        self.media_port = self.media_port or free_port(self.ip, span=4)
        cmd = [self.sipp]
        if self.remote:
            cmd.append(self.remote)
        cmd += [
            "-sf", str(self.scenario),
            "-i", self.ip, "-p", str(self.port),
            "-mi", self.ip, "-mp", str(self.media_port),
            "-cp", str(self.control_port),
            "-t", "t1" if self.transport == "tcp" else "u1",
            "-nostdin",
            "-trace_stat", "-stf", str(self.stat_csv), "-fd", "1",
            "-trace_err", "-error_file", str(self.errors_log),
            *self.args,
        ]
        return cmd

    def start(self) -> None:
        self.command = self.build_command()
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(self.command, cwd=self.dir, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait_bound(self, timeout_s: float = 5.0) -> None:
        """Until SIPp's SIP socket exists (binding the same address then fails)."""
        kind = socket.SOCK_STREAM if self.transport == "tcp" else socket.SOCK_DGRAM
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise SippError(f"SIPp {self.name} exited at start-up with {self.proc.returncode} "
                                f"({EXIT_CODES.get(self.proc.returncode, '?')}):\n{self.tail()}")
            with socket.socket(family, kind) as s:
                try:
                    s.bind((self.ip, self.port))
                except OSError:
                    return
            time.sleep(0.02)
        raise SippError(f"SIPp {self.name} did not bind {self.ip}:{self.port}:\n{self.tail()}")

    def control(self, command: str) -> None:
        """Send a keyboard key (``q``) or a command (``cset rate 20``) to the control port."""
        family = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.sendto(command.encode(), (self.ip, self.control_port))

    def set_rate(self, cps: float) -> None:
        self.control(f"cset rate {cps:g}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 5.0) -> int | None:
        """Quit: ``Q`` on the control port (SIPp writes its final statistics), then SIGTERM,
        then SIGKILL."""
        if self.proc is None:
            return None
        for step in ("Q", signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            if isinstance(step, str):
                self.control(step)
            else:
                self.proc.send_signal(step)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                continue
        return self.proc.returncode

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def trace_file(self, suffix: str) -> Path | None:
        """A file SIPp named ``<scenario>_<pid>_<suffix>`` (rtt.csv, counts.csv, ...)."""
        matches = sorted(self.dir.glob(f"{self.scenario.stem}_*_{suffix}"))
        return matches[-1] if matches else None

    def tail(self, chars: int = 2000) -> str:
        parts = []
        for path in (self.output, self.errors_log):
            try:
                text = path.read_text(errors="replace").strip()
            except OSError:
                continue
            if text:
                parts.append(f"--- {path.name}\n{text[-chars:]}")
        return "\n".join(parts)
