"""The shipped Kamailio configuration (examples/kamailio/) in front of two sipmask workers that
share a Redis store, with SIPp peers, all inside a network namespace this test creates (Kamailio
relays to addresses named in messages: nothing may leave the machine).

One worker is SIGKILLed between two batches of calls: every call of the second batch must
still complete, through the survivor (Kamailio gives a silent worker 1 s, marks it down and
tries the next one). And one is SIGKILLed while its calls are up: the survivor claims them from
the store once the dead worker's lease has run out, sends each leg an UPDATE with its Contact,
and the calls go on through it to their BYE (Kamailio hands in-dialog requests meant for the
dead worker to a live one).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from .conftest import A_REAL, A_VIRTUAL, B_PREFIX, B_REAL, B_VIRTUAL, ROOT, SCENARIOS, SIPP, received

pytestmark = pytest.mark.e2e

KAMAILIO = shutil.which("kamailio")
REDIS = shutil.which("redis-server")
EXAMPLE = ROOT / "examples" / "kamailio"
CALLEE = ("127.0.0.3", 5080)
WORKERS = (5071, 5072)


def _can_make_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = f"smprobe{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


def test_the_kamailio_example_passes_kamailios_own_check() -> None:
    """`kamailio -c` parses the file and loads every module it names."""
    assert KAMAILIO, "kamailio is not installed (scripts/system-deps.sh installs it)"
    res = subprocess.run([KAMAILIO, "-c", "-f", str(EXAMPLE / "kamailio.cfg"),
                          "-A", f'DISPATCHER_LIST="{EXAMPLE / "dispatcher.list"}"'],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]


class Namespace:
    """A network namespace with only its loopback up; processes started in it are killed at close."""

    def __init__(self, workdir: Path) -> None:
        self.name = f"sm{uuid.uuid4().hex[:10]}"
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.run(["ip", "link", "set", "lo", "up"], check=True)

    def cmd(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.cmd(args), capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload, no-any-return]

    def start(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "wb")  # noqa: SIM115 - closed with the process
        # a process group each: Kamailio forks its workers, which a kill of the main process
        # alone would leave running (they outlived every test run before)
        proc = subprocess.Popen(self.cmd(args), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the process and everything it forked
            except ProcessLookupError:
                pass
            proc.wait()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def _wait_for(predicate, what: str, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _worker_config(workdir: Path, port: int, redis_port: int, extra: str = "") -> Path:
    path = workdir / f"worker{port}.toml"
    path.write_text(f"""
[sip]
listen = ["udp:127.0.0.1:{port}"]

# B legs go through Kamailio too (its CARRIER is the callee): the carrier sees only Kamailio
[[routes]]
prefix = "{B_PREFIX}"
gateways = ["udp:127.0.0.1:5060"]

[store]
backend = "redis"
redis_url = "redis://127.0.0.1:{redis_port}/0"
key_file = "{workdir / 'cluster.key'}"
poll_interval_s = 0.2

[api]
enabled = false

[log]
level = "info"
format = "json"

[cluster]
worker_id = "worker{port}"
{extra}
""")
    return path


def _sipp(ns: Namespace, scenario: str, name: str, *args: str) -> list[str]:
    assert SIPP is not None
    return [SIPP, *args, "-sf", str(SCENARIOS / scenario), "-nostdin", "-max_retrans", "5",
            "-trace_msg", "-message_file", str(ns.workdir / f"{name}.messages"),
            "-trace_err", "-error_file", str(ns.workdir / f"{name}.errors")]


def _calls(ns: Namespace, name: str, calls: int) -> subprocess.CompletedProcess[str]:
    args = _sipp(ns, "uac_basic.xml", name, "127.0.0.1:5060", "-i", "127.0.0.2", "-p", "0",
                 "-s", A_VIRTUAL, "-key", "caller", A_REAL, "-m", str(calls), "-r", "10",
                 "-timeout", "40s", "-timeout_error")
    return ns.run(args)


def _cluster(ns: Namespace, tmp_path: Path, *, callee_scenario: str, callee_calls: int,
             extra: str = "") -> list[subprocess.Popen[bytes]]:
    """Redis, two workers, the callee and Kamailio in ``ns``; returns the workers."""
    redis_port = 6390
    ns.start([REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no"], "redis.log")
    _wait_for(lambda: ns.run(["redis-cli", "-p", str(redis_port), "ping"]).stdout.strip() == "PONG"
              if shutil.which("redis-cli") else True, "redis")
    time.sleep(0.3)
    configs = [_worker_config(tmp_path, port, redis_port, extra) for port in WORKERS]
    # the first command on the new Redis store makes the workers' shared key file
    added = ns.run([sys.executable, "-m", "proxy", "-c", str(configs[0]), "pairing", "add",
                    "--a", A_REAL, "--a-virtual", A_VIRTUAL, "--b", B_REAL,
                    "--b-virtual", B_VIRTUAL], cwd=ROOT)
    assert added.returncode == 0, added.stdout + added.stderr
    env_py = [sys.executable, "-m", "proxy"]
    workers = [ns.start([*env_py, "-c", str(c), "run"], f"worker{p}.log")
               for c, p in zip(configs, WORKERS)]
    ns.start(_sipp(ns, callee_scenario, "callee", "-i", CALLEE[0], "-p", str(CALLEE[1]),
                   "-key", "callee", B_REAL, "-m", str(callee_calls)), "callee.log")
    dispatcher = tmp_path / "dispatcher.list"
    dispatcher.write_text("".join(f"1 sip:127.0.0.1:{p} 2 0 name=worker{p}\n" for p in WORKERS))
    ns.start([KAMAILIO, "-DD", "-E", "-f", str(EXAMPLE / "kamailio.cfg"),
              "-A", f'DISPATCHER_LIST="{dispatcher}"',
              "-A", f'CARRIER="sip:{CALLEE[0]}:{CALLEE[1]}"', "-A", 'MASK_KEY="cluster-test-key"',
              # one UDP process: SIPp's scenario wants a call's 180 before its 200
              "-A", "CHILDREN=1", "-m", "64", "-M", "8"], "kamailio.log")
    time.sleep(2.0)  # workers started, pairings loaded, Kamailio listening
    for w, p in zip(workers, WORKERS):
        assert w.poll() is None, (tmp_path / f"worker{p}.log").read_text()[-3000:]
    return workers


def _assert_no_worker_address(*texts: str) -> None:
    """Neither side ever sees a worker's address: Kamailio's topology hiding leaves only its
    own in Via, Contact and Record-Route (the workers listen on 127.0.0.1:5071/5072)."""
    for text in texts:
        assert text, "nothing received"
        for port in WORKERS:
            assert f":{port}" not in text, f"a worker's port reached a party:\n{text[:3000]}"


def _log(tmp_path: Path, port: int) -> str:
    return (tmp_path / f"worker{port}.log").read_text()


@pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and iproute2 (ip netns)")
def test_a_killed_worker_loses_no_new_call_behind_kamailio(tmp_path: Path) -> None:
    assert KAMAILIO and REDIS and SIPP, "kamailio, redis-server and sipp are installed by scripts/system-deps.sh"
    ns = Namespace(tmp_path)
    try:
        workers = _cluster(ns, tmp_path, callee_scenario="uas_basic.xml", callee_calls=100)
        first = _calls(ns, "before", 20)
        assert first.returncode == 0, (tmp_path / "before.errors").read_text()[-3000:] \
            if (tmp_path / "before.errors").exists() else first.stdout[-3000:]
        served = {p: (tmp_path / f"worker{p}.log").read_text().count('"call.answered"') for p in WORKERS}
        assert all(served.values()), f"both workers take calls before the kill: {served}"

        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        second = _calls(ns, "after", 30)
        details = "\n".join((tmp_path / f).read_text()[-3000:] for f in ("after.errors", "kamailio.log")
                            if (tmp_path / f).exists())
        assert second.returncode == 0, f"calls were lost after the kill:\n{details}"
        answered_after = (tmp_path / f"worker{WORKERS[1]}.log").read_text().count('"call.answered"')
        assert answered_after - served[WORKERS[1]] == 30, "every new call went through the survivor"
        # what the caller saw carries neither the callee's number nor a worker's port
        caller_text = "".join(m.raw for m in received(tmp_path / "after.messages"))
        assert B_REAL not in caller_text
        _assert_no_worker_address(caller_text, "".join(m.raw for m in received(tmp_path / "callee.messages")))
    finally:
        ns.close()


@pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and iproute2 (ip netns)")
def test_calls_of_a_killed_worker_continue_through_its_sibling(tmp_path: Path) -> None:
    """Ten held calls through Kamailio, spread over both workers; one worker is SIGKILLed.
    Its lease runs out (2 s), the sibling claims its calls (1 s later), sends each leg an
    UPDATE with its Contact, and every call ends with its caller's BYE, relayed to the callee,
    with a CDR: no leg stuck, no 481, no call lost. Before, those callers' BYEs were lost with
    the worker and the callees were never released."""
    assert KAMAILIO and REDIS and SIPP, "kamailio, redis-server and sipp are installed by scripts/system-deps.sh"
    calls = 10
    ns = Namespace(tmp_path)
    try:
        workers = _cluster(ns, tmp_path, callee_scenario="uas_held.xml", callee_calls=calls,
                           extra="lease_s = 2.0\ntakeover_after_s = 1.0\nflush_interval_s = 0.2")
        caller = ns.start(_sipp(ns, "uac_held.xml", "held", "127.0.0.1:5060", "-i", "127.0.0.2",
                                "-p", "0", "-s", A_VIRTUAL, "-key", "caller", A_REAL,
                                "-m", str(calls), "-r", "10", "-l", str(calls),
                                "-timeout", "40s", "-timeout_error"), "held.log")
        _wait_for(lambda: sum(_log(tmp_path, p).count('"call.answered"') for p in WORKERS) >= calls,
                  "ten answered calls")
        time.sleep(0.6)  # written to the store (flush every 0.2 s)
        on_dead = _log(tmp_path, WORKERS[0]).count('"call.answered"')
        assert 0 < on_dead < calls, f"both workers hold calls before the kill ({on_dead} on the first)"
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        assert caller.wait(timeout=40) == 0, "\n".join(
            (tmp_path / f).read_text()[-3000:] for f in ("held.errors", "held.log", "kamailio.log")
            if (tmp_path / f).exists())
        survivor = _log(tmp_path, WORKERS[1])
        assert '"cluster.took_over"' in survivor, survivor[-3000:]
        took = [line for line in survivor.splitlines() if '"cluster.took_over"' in line]
        assert f'"calls": {on_dead}' in took[0], took
        callee_msgs = received(tmp_path / "callee.messages")
        def calls_with(messages: list, method: str) -> int:  # retransmissions counted once
            return len({m.header("Call-ID") for m in messages if m.start.startswith(method + " ")})

        assert calls_with(callee_msgs, "UPDATE") == on_dead
        assert calls_with(callee_msgs, "BYE") == calls
        caller_msgs = received(tmp_path / "held.messages")
        assert calls_with(caller_msgs, "UPDATE") == on_dead
        assert not [m for m in caller_msgs if m.start.startswith("SIP/2.0 481")]
        # every call has its CDR, the taken-over ones written by the survivor
        def cdr_lines() -> str:
            return ns.run([sys.executable, "-m", "proxy", "-c", str(tmp_path / f"worker{WORKERS[1]}.toml"),
                           "cdr", "list", "--limit", "100"], cwd=ROOT).stdout

        _wait_for(lambda: cdr_lines().count("completed") >= calls, "ten CDRs (written once a second)",
                  timeout=5)
        assert cdr_lines().count("cause=bye_a") == calls
        caller_text = "".join(m.raw for m in caller_msgs)
        assert B_REAL not in caller_text and B_REAL[1:] not in caller_text
        _assert_no_worker_address(caller_text, "".join(m.raw for m in callee_msgs))
    finally:
        ns.close()
