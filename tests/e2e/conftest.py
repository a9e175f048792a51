"""End-to-end harness: a real ``sipmask run`` process between real SIPp peers over loopback.

Topology (all loopback; Linux routes the whole of 127.0.0.0/8 to ``lo``)::

    caller SIPp  127.0.0.2  --->  sipmask 127.0.0.1  --->  callee SIPp 127.0.0.3
                                                      \\->  spare gateway 127.0.0.4 (failover)

Each party has its own address so the tests can assert that one party's address never reaches
the other. Where extra loopback addresses cannot be bound, everything falls back to 127.0.0.1
and only ``IP:PORT`` leaks are checked.

Assertions are made on the bytes each SIPp peer *received*, parsed from its ``-trace_msg``
message log (``received_messages`` / ``received_bytes``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP = shutil.which("sipp")

# Parties of the standard pairing (see `pairing add` in the brief / proxy/cli/pairing.py):
# A dials A_VIRTUAL to reach B; B sees B_VIRTUAL as the caller; B dials B_VIRTUAL to reach A,
# and A then sees A_VIRTUAL.
A_REAL = "+15551230001"
A_VIRTUAL = "+15557770001"
B_REAL = "+15559990001"
B_VIRTUAL = "+15557770002"
A_PREFIX = "+1555123"
B_PREFIX = "+1555999"


def number_forms(number: str) -> tuple[str, ...]:
    """The spellings of an E.164 number a leak could take: +1NXX..., 1NXX..., NXX... (national)."""
    digits = number.lstrip("+")
    return (number, digits, digits[1:] if digits.startswith("1") else digits)


def _can_bind(ip: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


DISTINCT_IPS = all(_can_bind(ip) for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"))
SIPMASK_IP = "127.0.0.1"
CALLER_IP = "127.0.0.2" if DISTINCT_IPS else "127.0.0.1"
CALLEE_IP = "127.0.0.3" if DISTINCT_IPS else "127.0.0.1"
SPARE_IP = "127.0.0.4" if DISTINCT_IPS else "127.0.0.1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SIPP is not None:
        return
    skip = pytest.mark.skip(reason="sipp not installed (apt-get install sip-tester)")
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(skip)


# ------------------------------------------------------------------------------------ ports

_used_ports: set[int] = set()


def free_port(ip: str = "127.0.0.1", *, span: int = 1) -> int:
    """A port free for both UDP and TCP on *ip* (and the next ``span - 1`` ports, for RTP).

    Bind-and-release: racy in theory, fine on a test machine; ports handed out in this session
    are never handed out twice.
    """
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((ip, 0))
            base = probe.getsockname()[1]
        if base + span > 65535 or any(p in _used_ports for p in range(base, base + span)):
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + span):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    s = socket.socket(socket.AF_INET, kind)
                    socks.append(s)
                    if kind == socket.SOCK_STREAM:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((ip, port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _used_ports.update(range(base, base + span))
        return base
    raise RuntimeError(f"no free port on {ip}")


# ----------------------------------------------------------------------- message log parsing

_SEPARATOR = re.compile(r"^-{20,} \d{4}-\d\d-\d\d [\d:.]+\s*$", re.M)
_RECEIVED = re.compile(r"^(UDP|TCP|TLS|SCTP) message received \[\d+\] bytes :\s*$")
_SENT = re.compile(r"^(UDP|TCP|TLS|SCTP) message sent \(\d+ bytes\):\s*$")


def _log_blocks(message_file: Path) -> Iterator[tuple[str, str]]:
    if not Path(message_file).exists():
        return
    text = Path(message_file).read_text(errors="replace")
    for chunk in _SEPARATOR.split(text):
        chunk = chunk.lstrip("\r\n")
        if not chunk:
            continue
        first, _, rest = chunk.partition("\n")
        if _RECEIVED.match(first):
            yield "received", rest.strip("\r\n")
        elif _SENT.match(first):
            yield "sent", rest.strip("\r\n")


def received_messages(message_file: Path) -> list[str]:
    """Every SIP message the SIPp peer received, in order, as text."""
    return [m for kind, m in _log_blocks(message_file) if kind == "received"]


def sent_messages(message_file: Path) -> list[str]:
    """Every SIP message the SIPp peer sent, in order, as text."""
    return [m for kind, m in _log_blocks(message_file) if kind == "sent"]


def received_bytes(message_file: Path) -> str:
    """All that the peer received, concatenated (for substring assertions)."""
    return "\n\n".join(received_messages(message_file))


@dataclass
class SipMsg:
    """A received message split into start line, headers (order kept) and body."""

    start: str
    headers: list[tuple[str, str]]
    body: str
    raw: str

    @classmethod
    def parse(cls, raw: str) -> SipMsg:
        text = raw.replace("\r\n", "\n")
        head, _, body = text.partition("\n\n")
        lines = head.split("\n")
        headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded line
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return cls(lines[0].strip(), headers, body.strip("\n"), raw)

    @property
    def is_response(self) -> bool:
        return self.start.startswith("SIP/2.0 ")

    @property
    def status(self) -> int | None:
        return int(self.start.split()[1]) if self.is_response else None

    @property
    def reason(self) -> str | None:
        return self.start.split(" ", 2)[2] if self.is_response else None

    @property
    def method(self) -> str:
        """Request method, or the CSeq method of a response."""
        if self.is_response:
            return (self.header("CSeq") or " ").split()[-1]
        return self.start.split()[0]

    def header(self, name: str) -> str | None:
        for hname, value in self.headers:
            if hname.lower() == name.lower():
                return value
        return None

    def header_names(self) -> list[str]:
        return [name for name, _ in self.headers]

    @property
    def head(self) -> str:
        return "\n".join([self.start] + [f"{n}: {v}" for n, v in self.headers])


def received(message_file: Path) -> list[SipMsg]:
    """Parsed messages the peer received."""
    return [SipMsg.parse(m) for m in received_messages(message_file)]


def find(messages: Sequence[SipMsg], *, method: str | None = None, status: int | None = None,
         request: bool | None = None) -> list[SipMsg]:
    """Messages matching a method (request method, or CSeq method for responses) and/or status."""
    out = []
    for m in messages:
        if request is True and m.is_response or request is False and not m.is_response:
            continue
        if status is not None and m.status != status:
            continue
        if method is not None and m.method != method:
            continue
        out.append(m)
    return out


# ------------------------------------------------------------------------------ SIPp peers

SIPP_EXIT = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    255: "fatal error",
    254: "fatal error binding a socket",
}


@dataclass
class SippPeer:
    """One SIPp process (a caller UAC or a callee UAS) and its log files."""

    name: str
    scenario: str
    ip: str
    port: int
    transport: str
    args: list[str]
    workdir: Path
    message_file: Path
    error_file: Path
    screen_file: Path
    stdout_file: Path
    number: str = ""
    tokens: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    returncode: int | None = None

    @property
    def address(self) -> str:
        """The signalling address as it would appear in a Via/Contact: IP:PORT."""
        return f"{self.ip}:{self.port}"

    def messages(self) -> list[SipMsg]:
        return received(self.message_file)

    def received_text(self) -> str:
        return received_bytes(self.message_file)

    def describe(self) -> str:
        """Exit status, errors and the message log: printed when an assertion fails."""
        parts = [f"--- {self.name} ({self.scenario}) exit={self.returncode} "
                 f"({SIPP_EXIT.get(self.returncode or 0, '?')})",
                 "$ " + " ".join(self.args)]
        for label, path in (("errors", self.error_file), ("stdout", self.stdout_file)):
            if path.exists():
                text = path.read_text(errors="replace").strip()
                if text:
                    parts.append(f"--- {self.name} {label}:\n{text[-3000:]}")
        if self.message_file.exists():
            parts.append(f"--- {self.name} messages:\n{self.message_file.read_text(errors='replace')[-12000:]}")
        return "\n".join(parts)


class SippRunner:
    """Builds and runs SIPp peers for one test; kills leftovers at teardown."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.peers: list[SippPeer] = []

    def _peer(self, name: str, scenario: str, ip: str, port: int | None, transport: str,
              keys: dict[str, str], calls: int, timeout_s: float, extra: Sequence[str],
              remote: str | None, service: str | None) -> SippPeer:
        assert SIPP is not None
        port = port or free_port(ip)
        media_port = free_port(ip, span=4)
        files = {k: self.workdir / f"{name}.{k}" for k in ("messages", "errors", "screen", "stdout")}
        args = [SIPP]
        if remote:
            args.append(remote)
        args += [
            "-sf", str(SCENARIOS / scenario),
            "-i", ip, "-p", str(port), "-mi", ip, "-mp", str(media_port),
            "-t", "t1" if transport == "tcp" else "u1",
            "-m", str(calls),
            "-nostdin",
            "-timeout", f"{int(timeout_s)}s", "-timeout_error",
            "-trace_msg", "-message_file", str(files["messages"]),
            "-trace_err", "-error_file", str(files["errors"]),
            "-trace_screen", "-screen_file", str(files["screen"]),
            "-max_retrans", "5",
        ]
        if service:
            args += ["-s", service]
        for key, value in keys.items():
            args += ["-key", key, value]
        args += list(extra)
        peer = SippPeer(name, scenario, ip, port, transport, args, self.workdir,
                        files["messages"], files["errors"], files["screen"], files["stdout"],
                        number=keys.get("caller") or keys.get("callee") or "",
                        tokens=UAC_TOKENS if remote else UAS_TOKENS)
        self.peers.append(peer)
        return peer

    def start_uas(self, scenario: str, *, name: str = "callee", ip: str = CALLEE_IP,
                  number: str = B_REAL, calls: int = 1, transport: str = "udp",
                  timeout_s: float = 25, keys: dict[str, str] | None = None,
                  extra: Sequence[str] = ()) -> SippPeer:
        """Start a SIPp UAS in the background and wait until its socket is bound."""
        allkeys = {"callee": number, **(keys or {})}
        peer = self._peer(name, scenario, ip, None, transport, allkeys, calls, timeout_s, extra,
                          None, None)
        with open(peer.stdout_file, "wb") as out:
            peer.proc = subprocess.Popen(peer.args, cwd=self.workdir, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_bound(peer)
        return peer

    def run_uac(self, scenario: str, target: str, *, service: str, name: str = "caller",
                ip: str = CALLER_IP, number: str = A_REAL, calls: int = 1, transport: str = "udp",
                timeout_s: float = 20, keys: dict[str, str] | None = None,
                extra: Sequence[str] = ()) -> SippPeer:
        """Run a SIPp UAC in the foreground until it has placed ``calls`` calls."""
        allkeys = {"caller": number, **(keys or {})}
        peer = self._peer(name, scenario, ip, None, transport, allkeys, calls, timeout_s,
                          ["-r", "10", "-l", "1", *extra], target, service)
        with open(peer.stdout_file, "wb") as out:
            proc = subprocess.run(peer.args, cwd=self.workdir, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=timeout_s + 15)
        peer.returncode = proc.returncode
        return peer

    def start_uac(self, scenario: str, target: str, *, service: str, name: str = "caller",
                  ip: str = CALLER_IP, number: str = A_REAL, calls: int = 1,
                  timeout_s: float = 20, extra: Sequence[str] = ()) -> SippPeer:
        """:meth:`run_uac` in the background (a flood beside other calls); ``wait`` for it."""
        peer = self._peer(name, scenario, ip, None, "udp", {"caller": number}, calls, timeout_s,
                          ["-r", "10", "-l", "1", *extra], target, service)
        with open(peer.stdout_file, "wb") as out:
            peer.proc = subprocess.Popen(peer.args, cwd=self.workdir, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return peer

    def wait(self, peer: SippPeer, timeout_s: float = 15) -> int:
        """Wait for a background peer to exit; kill it (and report 'timeout') if it does not."""
        assert peer.proc is not None
        try:
            peer.returncode = peer.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            peer.proc.kill()
            peer.proc.wait()
            peer.returncode = -9
        return peer.returncode

    def close(self) -> None:
        for peer in self.peers:
            if peer.proc is not None and peer.proc.poll() is None:
                peer.proc.kill()
                peer.proc.wait()


def _wait_bound(peer: SippPeer, timeout_s: float = 5.0) -> None:
    """Until the UAS's listening socket exists (binding the same address then fails)."""
    kind = socket.SOCK_STREAM if peer.transport == "tcp" else socket.SOCK_DGRAM
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert peer.proc is not None
        if peer.proc.poll() is not None:
            peer.returncode = peer.proc.returncode
            raise AssertionError(f"SIPp {peer.name} exited at start-up\n{peer.describe()}")
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((peer.ip, peer.port))
            except OSError:
                return
        time.sleep(0.02)
    raise AssertionError(f"SIPp {peer.name} did not bind {peer.address}\n{peer.describe()}")


def assert_sipp_ok(*peers: SippPeer, expect: int = 0) -> None:
    """Every peer exited with ``expect`` (0: all its calls succeeded)."""
    bad = [p for p in peers if p.returncode != expect]
    if bad:
        details = "\n\n".join(p.describe() for p in peers)
        names = ", ".join(f"{p.name} exit {p.returncode}" for p in bad)
        raise AssertionError(f"SIPp failed: {names}\n{details}")


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippRunner]:
    runner = SippRunner(tmp_path)
    yield runner
    runner.close()


# ------------------------------------------------------------------------------- sipmask


@dataclass
class Sipmask:
    """A ``sipmask run`` subprocess with its own config, store and key in tmp_path."""

    workdir: Path
    udp_port: int
    tcp_port: int
    routes: list[tuple[str, list[str]]]
    calls: dict[str, object] = field(default_factory=dict)
    log_level: str = "debug"
    api: bool = True
    extra_toml: str = ""
    api_port: int = field(init=False)
    config_path: Path = field(init=False)
    db: Path = field(init=False)
    key: Path = field(init=False)
    stderr_path: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    ip: str = SIPMASK_IP
    #: the command that runs sipmask: this interpreter's ``-m proxy`` (the checkout), or an
    #: installed ``sipmask`` script (the packaging test)
    program: tuple[str, ...] = (sys.executable, "-m", "proxy")
    #: soft RLIMIT_NOFILE for the sipmask process (None: inherited)
    nofile: int | None = None
    #: extra ``key = value`` lines of the [sip] table
    sip_toml: str = ""

    def __post_init__(self) -> None:
        self.config_path = self.workdir / "sipmask.toml"
        self.db = self.workdir / "sipmask.db"
        self.key = self.workdir / "sipmask.key"
        self.stderr_path = self.workdir / "sipmask.stderr"
        # Every instance gets its own API port: several may run at once (never the 8080 default).
        self.api_port = free_port(self.ip) if self.api else 0

    @property
    def api_url(self) -> str:
        return f"http://{self.ip}:{self.api_port}"

    @property
    def udp_target(self) -> str:
        return f"{self.ip}:{self.udp_port}"

    @property
    def tcp_target(self) -> str:
        return f"{self.ip}:{self.tcp_port}"

    def write_config(self) -> None:
        lines = [
            "[sip]",
            f'listen = ["udp:{self.ip}:{self.udp_port}", "tcp:{self.ip}:{self.tcp_port}"]',
            self.sip_toml,
            "",
        ]
        for prefix, gateways in self.routes:
            gws = ", ".join(f'"{g}"' for g in gateways)
            lines += ["[[routes]]", f'prefix = "{prefix}"', f"gateways = [{gws}]", ""]
        calls: dict[str, object] = {"ring_timeout_s": 10.0, "unknown_code": 404, **self.calls}
        lines.append("[calls]")
        for k, v in calls.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines += [
            "",
            "[store]",
            f'path = "{self.db}"',
            f'key_file = "{self.key}"',
            "poll_interval_s = 0.2",
            "",
            "[log]",
            f'level = "{self.log_level}"',
            'format = "json"',
            "",
            "[api]",
            f"enabled = {'true' if self.api else 'false'}",
            f'listen = "{self.ip}:{self.api_port or 8080}"',
            "",
        ]
        if "[cluster]" not in self.extra_toml:
            # calls still up at a test's end are not drained for the default 30 s (the
            # teardown expects an exit within 10 s of SIGTERM); drain tests set their own
            lines += ["[cluster]", "drain_timeout_s = 2", ""]
        if self.extra_toml:
            lines += ["", self.extra_toml]
        self.config_path.write_text("\n".join(lines))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``sipmask --db DB --key-file KEY ARGS...`` (admin commands)."""
        cmd = [*self.program, "--db", str(self.db), "--key-file", str(self.key), *args]
        cwd = ROOT if self.program[0] == sys.executable else self.workdir
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=30)

    def add_pairing(self, a: str = A_REAL, a_virtual: str = A_VIRTUAL, b: str = B_REAL,
                    b_virtual: str = B_VIRTUAL, *extra: str) -> str:
        res = self.cli("pairing", "add", "--a", a, "--a-virtual", a_virtual, "--b", b,
                       "--b-virtual", b_virtual, *extra)
        assert res.returncode == 0, f"pairing add failed: {res.stdout}{res.stderr}"
        match = re.search(r"\bps_[0-9a-zA-Z]+", res.stdout)
        return match.group(0) if match else ""

    def start(self, timeout_s: float = 15.0) -> None:
        self.write_config()
        cmd = [*self.program, "-c", str(self.config_path), "run"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMASK_")}
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=err, stderr=err,
                                         stdin=subprocess.DEVNULL, env=env,
                                         preexec_fn=self._limits if self.nofile else None)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"sipmask exited at start-up with {self.proc.returncode}:\n{self.stderr()[-5000:]}"
                )
            # SIP answers first; the API is bound a little later in start-up
            if options_ping(self.ip, self.udp_port, timeout_s=0.3) == 200 and (
                    not self.api or self._api_up()):
                return
        raise AssertionError(f"sipmask did not answer OPTIONS (and /healthz) within {timeout_s}s:\n"
                             f"{self.stderr()[-5000:]}")

    def _limits(self) -> None:
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, hard))

    def _api_up(self) -> bool:
        try:
            with urllib.request.urlopen(self.api_url + "/healthz", timeout=0.3) as reply:
                return bool(reply.status == 200)
        except OSError:
            return False

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def log_events(self) -> list[dict[str, object]]:
        """Parsed JSON log lines (lines that are not JSON are skipped)."""
        events = []
        for line in self.stderr().splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return events

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"sipmask ignored SIGTERM for 10s:\n{self.stderr()[-5000:]}") from None
        return self.proc.returncode


def options_ping(ip: str, port: int, timeout_s: float = 0.5) -> int | None:
    """Send one OPTIONS over UDP from 127.0.0.1 and return the status code answered, if any."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        lport = s.getsockname()[1]
        msg = (
            f"OPTIONS sip:{ip}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1:{lport}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{ip}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@127.0.0.1\r\n"
            f"CSeq: 1 OPTIONS\r\n"
            f"Content-Length: 0\r\n\r\n"
        ).encode()
        s.settimeout(timeout_s)
        try:
            s.sendto(msg, (ip, port))
            while True:
                data, _ = s.recvfrom(65535)
                line = data.split(b"\r\n", 1)[0].decode(errors="replace")
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "SIP/2.0" and parts[1].isdigit():
                    code = int(parts[1])
                    if code >= 200:
                        return code
        except (TimeoutError, ConnectionRefusedError, OSError):
            return None


@pytest.fixture
def sipmask_factory(tmp_path: Path) -> Iterator[object]:
    """``make(routes=..., calls=..., pairing=True, start=True) -> Sipmask``.

    Teardown stops it with SIGTERM and asserts a clean exit (status 0, no traceback).
    """
    started: list[Sipmask] = []

    def make(routes: list[tuple[str, list[str]]] | None = None, *, calls: dict[str, object] | None = None,
             pairing: bool = True, start: bool = True, log_level: str = "debug",
             extra_toml: str = "", program: Sequence[str] | None = None,
             sip_toml: str = "", nofile: int | None = None) -> Sipmask:
        workdir = tmp_path / f"sipmask{len(started)}"
        workdir.mkdir()
        sm = Sipmask(workdir, free_port(SIPMASK_IP), free_port(SIPMASK_IP), routes or [],
                     dict(calls or {}), log_level)
        sm.extra_toml = extra_toml
        if program is not None:
            sm.program = tuple(program)
        sm.sip_toml, sm.nofile = sip_toml, nofile
        started.append(sm)
        if pairing:
            sm.add_pairing()
        if start:
            sm.start()
        return sm

    yield make

    problems = []
    for sm in started:
        if sm.proc is None:
            continue
        try:
            code = sm.stop()
        except AssertionError as exc:
            problems.append(str(exc))
            continue
        err = sm.stderr()
        if code != 0:
            problems.append(f"sipmask exited with status {code}:\n{err[-5000:]}")
        if "Traceback" in err:
            problems.append(f"sipmask printed a traceback:\n{err[-8000:]}")
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


# ------------------------------------------------------------------------------ leak checks

_LEAKY_HEADERS = ("remote-party-id", "p-preferred-identity", "diversion", "history-info",
                  "user-agent")

#: Markers the scenarios plant (see the XML files): device fingerprint (User-Agent / Server
#: product), SDP o= username and s= session name. They belong to the scenario's role, not to a
#: person: in the callback test the UAC (Alice's markers) is played by B.
UAC_TOKENS = ("AlicePhone", "alice-uac", "alice-session")
UAS_TOKENS = ("BobPhone", "bob-uas", "bob-session")


def assert_no_leaks(receiver: SippPeer, other: SippPeer) -> None:
    """``receiver`` got nothing that identifies ``other``.

    - no spelling of ``other``'s real number anywhere (start line, headers, Contact, Call-ID, bodies);
    - not ``other``'s signalling address ``IP:PORT`` anywhere, and (with distinct loopback
      addresses) not its IP in any header nor in SDP outside the media lines (so not in ``o=``);
    - no identity-leaking header at all (Remote-Party-ID, P-Preferred-Identity, Diversion,
      History-Info, User-Agent, X-*): the scenarios put them, with the real number, in what
      ``other`` sends;
    - none of ``other``'s planted markers: device fingerprint, SDP ``o=`` username, ``s=`` name.

    Media addresses (``c=``, ``m=``) may carry ``other``'s IP: sipmask does not relay RTP, so
    the media path is end to end by design and only signalling is masked.
    """
    messages = receiver.messages()
    assert messages, f"{receiver.name} received nothing\n{receiver.describe()}"
    problems: list[str] = []
    for msg in messages:
        label = f"{receiver.name} received {msg.start!r}"
        if other.number:
            for form in number_forms(other.number):
                if form in msg.raw:
                    problems.append(f"{label}: contains {other.name}'s real number as {form!r}")
                    break
        if other.address in msg.raw:
            problems.append(f"{label}: contains {other.name}'s address {other.address}")
        for token in other.tokens:
            if token in msg.raw:
                problems.append(f"{label}: contains {other.name}'s marker {token!r}")
        for name, value in msg.headers:
            lname = name.lower()
            if lname in _LEAKY_HEADERS or lname.startswith("x-"):
                problems.append(f"{label}: header {name}: {value} crossed")
            if DISTINCT_IPS and other.ip in value:
                problems.append(f"{label}: header {name} carries {other.name}'s IP: {value}")
        for line in msg.body.splitlines():
            line = line.strip()
            if line.startswith(("c=", "m=", "a=rtcp")):
                continue  # media addresses: no media relay, see docstring
            if DISTINCT_IPS and other.ip in line:
                problems.append(f"{label}: body line {line!r} carries {other.name}'s IP")
    assert not problems, "\n".join(problems) + "\n\n" + receiver.describe()


def assert_isolated(caller: SippPeer, *callees: SippPeer) -> None:
    """The leak check in both directions between a caller and each callee peer it reached."""
    for callee in callees:
        assert_no_leaks(caller, callee)
        assert_no_leaks(callee, caller)
