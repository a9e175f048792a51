"""Calls that outlive a worker, through a real ``sipmask run`` between SIPp peers: a worker
SIGKILLed with calls up and restarted reloads them (the callers' BYEs reach the callees, every
call has its CDR); SIGTERM drains (new calls get 503, established ones run to their end).
The sibling takeover behind Kamailio is in test_cluster.py."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from proxy.pairing import Cdr, NumberVault, SqliteStore

from .conftest import (
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    CALLEE_IP,
    CALLER_IP,
    SippPeer,
    assert_isolated,
    assert_sipp_ok,
    find,
)

pytestmark = pytest.mark.e2e

CLUSTER = "[cluster]\nflush_interval_s = 0.2\n"


def _start_uac(sipp, scenario: str, target: str, *, calls: int, rate: int = 10,
               timeout_s: float = 40) -> SippPeer:
    """A SIPp caller in the background (``sipp.run_uac`` waits for it)."""
    peer = sipp._peer("caller", scenario, CALLER_IP, None, "udp", {"caller": A_REAL}, calls,
                      timeout_s, ["-r", str(rate), "-l", str(calls)], target, A_VIRTUAL)
    with open(peer.stdout_file, "wb") as out:
        peer.proc = subprocess.Popen(peer.args, cwd=sipp.workdir, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return peer


def _answered(sm) -> int:
    return sum(1 for e in sm.log_events() if e.get("event") == "call.answered")


def _wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _cdrs(sm) -> list[Cdr]:
    """The CDRs in the worker's store file (read as the CLI would)."""
    store = SqliteStore(sm.db, NumberVault.from_key_file(sm.key, create=False))
    try:
        return store.list_cdrs(limit=1000)
    finally:
        store.close()


def test_a_killed_and_restarted_worker_keeps_its_calls(sipp, sipmask_factory):
    """Fifty calls are up when sipmask is SIGKILLed; it is started again on the same ports.
    Before this, the callers' BYEs got 481 and the callees were never released, and no CDR
    was written: now the restarted worker reloads the calls from the store, relays the BYEs,
    and writes fifty CDRs with the calls' real answer times."""
    calls = 50
    callee = sipp.start_uas("uas_held.xml", calls=calls, timeout_s=40)
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])], extra_toml=CLUSTER,
                         log_level="info")
    caller = _start_uac(sipp, "uac_held.xml", sm.udp_target, calls=calls, rate=50)
    _wait_for(lambda: _answered(sm) >= calls, "fifty answered calls")
    time.sleep(0.6)  # the journal's flush (0.2 s) has written them
    sm.proc.kill()
    sm.proc.wait()
    killed_at = time.time()
    sm.start()  # same config, ports, store and key: a restart
    reloaded = [e for e in sm.log_events() if e.get("event") == "cluster.reloaded"]
    assert reloaded and reloaded[-1]["calls"] == calls, sm.stderr()[-3000:]
    sipp.wait(caller, timeout_s=30)
    sipp.wait(callee, timeout_s=10)
    assert_sipp_ok(caller, callee)
    assert not find(caller.messages(), status=481), "a BYE was answered 481: the call was lost"
    assert len(find(callee.messages(), method="BYE", request=True)) == calls
    _wait_for(lambda: len(_cdrs(sm)) >= calls, "the CDRs (written once a second)", timeout=5)
    cdrs = _cdrs(sm)
    assert [(c.outcome, c.cause) for c in cdrs] == [("completed", "bye_a")] * calls
    assert all(c.answered_at is not None and c.answered_at < killed_at for c in cdrs), \
        "answer times kept over the restart"
    assert_isolated(caller, callee)


def test_sigterm_drains_new_calls_get_503_established_ones_finish(sipp, sipmask_factory, tmp_path):
    """SIGTERM used to close the sockets at once (callers got ICMP errors, callees stayed up).
    Now: a call placed while draining gets 503 + Retry-After, the five established calls run
    to their end, and sipmask exits 0 as soon as they have."""
    calls = 5
    callee = sipp.start_uas("uas_held.xml", calls=calls, timeout_s=40)
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])],
                         extra_toml=CLUSTER + "drain_timeout_s = 30\n", log_level="info")
    caller = _start_uac(sipp, "uac_held.xml", sm.udp_target, calls=calls, rate=20)
    _wait_for(lambda: _answered(sm) >= calls, "five answered calls")
    sm.proc.send_signal(signal.SIGTERM)
    _wait_for(lambda: any(e.get("event") == "sipmask.draining" for e in sm.log_events()), "the drain")
    csv = tmp_path / "late.csv"
    csv.write_text(f"SEQUENTIAL\n{A_REAL};{A_VIRTUAL};\n")
    late = sipp.run_uac("uac_overloaded.xml", sm.udp_target, service="unused", name="late",
                        calls=1, timeout_s=10, extra=["-inf", str(csv)])
    assert late.returncode == 0, late.describe()
    (refusal,) = find(late.messages(), status=503)
    assert refusal.header("Retry-After")
    assert sm.proc.poll() is None, "sipmask waits for the established calls"
    sipp.wait(caller, timeout_s=30)
    sipp.wait(callee, timeout_s=10)
    assert_sipp_ok(caller, callee)
    assert sm.proc.wait(timeout=10) == 0
    drained = [e for e in sm.log_events() if e.get("event") == "sipmask.drained"]
    assert drained and drained[-1]["handed_over"] == 0
    assert len(_cdrs(sm)) == calls  # the last flush at exit
