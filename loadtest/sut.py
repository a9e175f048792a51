"""The system under test when the runner brings its own: a ``sipmask run`` process with a fresh
config, store and key in the run's directory, seeded with N pairings.

Numbering of the seeded pairings (``i`` from 0 to N-1; N up to 1,000,000), all in +1 555:

    caller (A, real)          +1555 1000000 + i      the SIPp caller's From
    virtual A dials           +1555 7000000 + i % V  the Request-URI of the INVITE
    callee (B, real)          +1555 2000000 + i      where sipmask sends the B leg
    virtual B sees            +1555 8000000 + i % V  the B leg's From

V is the virtual-number pool (``--virtual-pool``, default N: one pair of virtual numbers per
pairing). A pool smaller than N is how production runs (many callers share a virtual
number; the pairing is found by caller *and* virtual number). Every callee starts with
:data:`CALLEE_PREFIX`, which the config routes to the callee SIPp.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CALLEE_PREFIX", "Pairing", "Sipmask", "options_ping", "pairings", "write_csv"]

ROOT = Path(__file__).resolve().parents[1]
CALLEE_PREFIX = "+15552"
MAX_PAIRINGS = 1_000_000


@dataclass(frozen=True, slots=True)
class Pairing:
    caller: str
    virtual: str
    callee: str
    callee_virtual: str


def pairings(n: int, pool: int | None = None) -> Iterator[Pairing]:
    """The ``n`` pairings the runner seeds (see the module docstring)."""
    if not 1 <= n <= MAX_PAIRINGS:
        raise ValueError(f"pairings must be 1..{MAX_PAIRINGS}, got {n}")
    pool = pool or n
    if not 1 <= pool <= MAX_PAIRINGS:
        raise ValueError(f"virtual pool must be 1..{MAX_PAIRINGS}, got {pool}")
    for i in range(n):
        yield Pairing(
            caller=f"+1555{1_000_000 + i:07d}",
            virtual=f"+1555{7_000_000 + i % pool:07d}",
            callee=f"+1555{2_000_000 + i:07d}",
            callee_virtual=f"+1555{8_000_000 + i % pool:07d}",
        )


def write_csv(path: Path, pairs: Sequence[tuple[str, str]]) -> Path:
    """The SIPp injection file: ``SEQUENTIAL`` then ``caller;virtual;`` per line."""
    lines = ["SEQUENTIAL"] + [f"{caller};{virtual};" for caller, virtual in pairs]
    path.write_text("\n".join(lines) + "\n")
    return path


def options_ping(ip: str, port: int, timeout_s: float = 0.5) -> int | None:
    """Send one OPTIONS over UDP and return the final status answered, if any."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((ip, port))  # lets the kernel pick the source address for the Via
        lhost, lport = s.getsockname()[:2]
        host, lhost = (f"[{ip}]", f"[{lhost}]") if family == socket.AF_INET6 else (ip, lhost)
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {lhost}:{lport};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:loadtest@{lhost}:{lport}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@loadtest\r\n"
            f"CSeq: 1 OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        s.settimeout(timeout_s)
        try:
            s.send(msg)
            while True:
                data = s.recv(65535)
                parts = data.split(b"\r\n", 1)[0].split()
                if len(parts) >= 2 and parts[0] == b"SIP/2.0" and parts[1].isdigit():
                    code = int(parts[1])
                    if code >= 200:
                        return code
        except OSError:  # timeout, ICMP port unreachable
            return None


@dataclass
class Sipmask:
    """``python -m proxy -c CONFIG run`` with its files in ``workdir``."""

    workdir: Path
    ip: str
    port: int
    uas_address: str  # "udp:IP:PORT": where the callee numbers are routed
    log_level: str = "warning"
    python: str = sys.executable
    extra_listen: Sequence[str] = ()
    proc: subprocess.Popen[bytes] | None = None
    config_path: Path = field(init=False)
    db: Path = field(init=False)
    key: Path = field(init=False)
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / "sipmask.toml"
        self.db = self.workdir / "sipmask.db"
        self.key = self.workdir / "sipmask.key"
        self.log_path = self.workdir / "sipmask.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def write_config(self) -> None:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        listen = [f"udp:{host}:{self.port}", f"tcp:{host}:{self.port}", *self.extra_listen]
        self.config_path.write_text("\n".join([
            "# written by python -m loadtest",
            "[sip]",
            "listen = [" + ", ".join(f'"{a}"' for a in listen) + "]",
            "",
            "[[routes]]",
            'name = "loadtest-callee"',
            f'prefix = "{CALLEE_PREFIX}"',
            f'gateways = ["{self.uas_address}"]',
            "",
            "[store]",
            f'path = "{self.db}"',
            f'key_file = "{self.key}"',
            "",
            "[log]",
            f'level = "{self.log_level}"',
            'format = "json"',
            "",
            "# a run is over when sipmask is stopped: calls still up are failures, not to be drained",
            "[cluster]",
            "drain_timeout_s = 1",
            "",
        ]))

    def seed(self, pairs: Sequence[Pairing]) -> float:
        """Create the pairings in a fresh store; returns the seconds it took."""
        started = time.monotonic()
        try:
            self._seed_in_process(pairs)
        except (ImportError, AttributeError, TypeError):
            # The store's Python API moved: fall back to the admin command, one per pairing.
            for p in pairs:
                self._cli("pairing", "add", "--a", p.caller, "--a-virtual", p.virtual,
                          "--b", p.callee, "--b-virtual", p.callee_virtual)
        return time.monotonic() - started

    def _seed_in_process(self, pairs: Sequence[Pairing]) -> None:
        # What `sipmask pairing add` does, without a Python start-up per pairing.
        from proxy.pairing.crypto import NumberVault
        from proxy.pairing.model import Participant
        from proxy.pairing.stores.sqlite import SqliteStore

        store = SqliteStore(self.db, NumberVault.from_key_file(self.key, create=True))
        try:
            now = time.time()
            for p in pairs:
                store.create_session(Participant(p.caller, p.virtual),
                                     Participant(p.callee, p.callee_virtual), now=now)
        finally:
            store.close()

    def _cli(self, *args: str) -> None:
        cmd = [self.python, "-m", "proxy", "--db", str(self.db), "--key-file", str(self.key), *args]
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
        if res.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {res.stderr.strip()}")

    def start(self, timeout_s: float = 20.0) -> None:
        """Start sipmask and wait until it answers OPTIONS."""
        self.write_config()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMASK_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "proxy", "-c", str(self.config_path), "run"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipmask exited at start-up ({self.proc.returncode}):\n"
                                   f"{self.log_tail()}")
            if options_ping(self.ip, self.port, timeout_s=0.3) is not None:
                return
        self.stop()
        raise RuntimeError(f"sipmask did not answer OPTIONS within {timeout_s:g}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
