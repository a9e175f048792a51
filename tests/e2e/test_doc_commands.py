"""Every shell command a user copies from README.md and docs/*.md (fenced ``sh`` / ``console``
blocks) is run here, verbatim, in a scratch directory laid out like a fresh clone with its
venv, or listed in NOT_RUN with the reason. A command added to, changed in or removed from the
docs without this file following fails the first test, so doc commands cannot drift."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, free_port, options_ping

pytestmark = pytest.mark.e2e

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```(sh|console)\n(.*?)^```", re.M | re.S)

#: run by `test_the_documented_commands_work`, in this order (a server is started and stopped)
RUN = [
    ".venv/bin/sipmask init sipmask.toml",
    ".venv/bin/sipmask check-config sipmask.toml",
    ".venv/bin/sipmask pairing add --a +15551230001 --a-virtual +15557770001 "
    "--b +15559990001 --b-virtual +15557770002",
    ".venv/bin/sipmask pairing list",
    ".venv/bin/sipmask token create ops --role admin",
    ".venv/bin/sipmask --help",
    ".venv/bin/sipmask --version",
    ".venv/bin/python -m loadtest --help",
    "sipmask token create ride-backend --role operator",
    "sipmask token list",
    "sipmask token revoke ride-backend",
    "sipmask token create grafana --role read-only --expires-in 30d",
    'sipmask token-of "+1 555-123-0001"',
    ".venv/bin/sipmask -c sipmask.toml run",
]

_SERVER = ".venv/bin/sipmask -c sipmask.toml run"

_CURL = "needs a running API and a token in $TOKEN/$ADMIN; the same requests are tested in tests/unit/test_api.py"
_LOAD = "a load test (minutes of CPU on the shared machine); the runner is tested in tests/e2e/test_loadtest.py"
_SIPP = "SIPp by hand against a running sipmask; what it drives is tested in tests/e2e/test_loadtest.py"
NOT_RUN: dict[str, str] = {
    "make run": "creates the venv and runs sipmask until interrupted; the venv the tests use is what it makes",
    "make test": "the whole test suite (this file is part of it)",
    'grep -F "$(sipmask token-of +15551230001)" sipmask.log':
        "needs a server's log; that a rejected call's line holds what token-of prints is tested in "
        "tests/unit/cli/test_token_of.py",
    "rtpengine --interface=203.0.113.10 --listen-ng=127.0.0.1:2223 --port-min=30000 "
    "--port-max=40000 --table=-1 --foreground --log-stderr":
        "an rtpengine on a public interface address; tests/e2e/rtpengine.py starts one on loopback "
        "with the same options (test_media.py)",
    **{cmd: _CURL for cmd in (
        "curl -s -X POST http://127.0.0.1:8080/v1/sessions",
        "curl -s -H \"Authorization: Bearer $TOKEN\" "
        "'http://127.0.0.1:8080/v1/sessions?status=open&participant=%2B15551230001&limit=50'",
        "curl -s -H \"Authorization: Bearer $TOKEN\" "
        "'http://127.0.0.1:8080/v1/sessions?status=open&participant=%2B15551230001&limit=50&cursor=czE6NTA'",
        "curl -s -X PATCH http://127.0.0.1:8080/v1/sessions/ps_2b9d0f6e1a7c4e55",
        "curl -s -X POST -H \"Authorization: Bearer $TOKEN\" "
        "http://127.0.0.1:8080/v1/sessions/ps_2b9d0f6e1a7c4e55/close",
        "for n in +18005550001 +18005550002 +18005550003; do",
        "curl -s -H \"Authorization: Bearer $ADMIN\" http://127.0.0.1:8080/v1/pool/numbers",
        "curl -s -X POST -H \"Authorization: Bearer $ADMIN\" "
        "http://127.0.0.1:8080/v1/pool/numbers/+18005550001/drain",
        "curl -s -X DELETE -H \"Authorization: Bearer $ADMIN\" "
        "http://127.0.0.1:8080/v1/pool/numbers/+18005550001",
    )},
    **{cmd: _LOAD for cmd in (
        "python -m loadtest run",
        "python -m loadtest run --scenario basic --calls 2000 --rate 50 --json out/basic.json",
        "python -m loadtest run --ramp 10:200:60",
        "python -m loadtest run --concurrency 50 --duration 120",
        "python -m loadtest run --scenario long --hold 60000 --concurrency 500 --duration 180 -t tcp",
        "python -m loadtest compare main.json branch.json --max-ratio sut.cpu_us_per_call=1.10",
        "python -m loadtest run --concurrency 20 --calls 5000 --json new.json",
        "python -m loadtest compare reference.json new.json --max-ratio sut.cpu_us_per_call=1.10 "
        "--min-ratio rate.cps=0.90",
        "python -m loadtest run --target 10.0.0.5:5060 --uac 10.0.0.9:5070 --uas 10.0.0.9:5080 "
        "--csv numbers.csv --sut-pid 1234 --concurrency 50 --calls 20000",
        "python -m loadtest run --target pbx.example.net:5060 --uac 10.0.0.9:0 --no-uas "
        "--caller +15551230001 --virtual +15557770001 --rate 5 --calls 100",
    )},
    **{cmd: _SIPP for cmd in (
        "sipp -sf loadtest/scenarios/uas_pbx.xml -i 127.0.0.1 -p 5080 -set busy_pct 10 -set ring_ms 500",
        "printf 'SEQUENTIAL\\n+15551230001;+15557770001;\\n' > pairs.csv",
        "sipp 127.0.0.1:5060 -sf loadtest/scenarios/uac_basic.xml -inf pairs.csv -i 127.0.0.1 -p 5070 "
        "-r 20 -m 1000 -d 2000 -trace_stat -stf stat.csv -fd 1 -trace_rtt -rtt_freq 1",
    )},
}


def _commands(kind: str, body: str) -> list[str]:
    """The commands of one block: continuation lines joined, comments and output dropped."""
    out: list[str] = []
    pending = ""
    in_command = kind == "sh"
    for raw in body.splitlines():
        line = raw.rstrip()
        if kind == "console" and not pending:
            in_command = line.startswith("$ ")
            line = line[2:]
        if not in_command:
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = (pending + line.strip()) if pending else line.strip()
        pending = ""
        line = re.sub(r"\s+#(?![^']*'[^']*$).*$", "", line)  # a trailing comment
        out.append(" ".join(line.split()))
    return out


def documented() -> list[str]:
    found = []
    for doc in DOCS:
        for match in _BLOCK.finditer(doc.read_text(encoding="utf-8")):
            found += _commands(match.group(1), match.group(2))
    return found


def _listed(command: str) -> bool:
    """Long curl commands are listed by their first line (their first -H/-d options vary)."""
    return command in RUN or command in NOT_RUN or any(
        command.startswith(key) for key in NOT_RUN if key.startswith(("curl", "for n")))


def test_every_documented_command_is_run_or_listed_with_a_reason() -> None:
    commands = documented()
    assert ".venv/bin/sipmask init sipmask.toml" in commands  # the parser finds the README's
    unlisted = [c for c in commands if not _listed(c)]
    assert not unlisted, f"documented commands neither run nor listed in NOT_RUN: {unlisted}"
    stale = [c for c in [*RUN, *NOT_RUN] if not any(d == c or d.startswith(c) for d in commands)]
    assert not stale, f"listed here but no longer in the docs: {stale}"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A directory like a fresh clone after `make run`: a .venv (this one) and nothing else."""
    venv = Path(sys.executable).parent.parent
    (tmp_path / ".venv").symlink_to(venv)
    return tmp_path


def test_the_documented_commands_work(clone: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMASK_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PATH"] = os.pathsep.join([str(clone / ".venv" / "bin"), env.get("PATH", "")])
    sip_port, api_port = free_port(), free_port()
    # the README's server, verbatim, on ports of its own: the example listens on 5060 and 8080
    env_server = {**env, "SIPMASK_LISTEN": f"udp:127.0.0.1:{sip_port}",
                  "SIPMASK_API_LISTEN": f"127.0.0.1:{api_port}"}
    for command in RUN:
        if command == _SERVER:
            continue
        res = subprocess.run(command, shell=True, cwd=clone, env=env_server, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert res.returncode == 0, f"$ {command}\n{res.stdout}\n{res.stderr}"
        assert "Traceback" not in res.stderr, f"$ {command}\n{res.stderr}"
    assert (clone / "sipmask.db").exists()  # the pairing went to the store the config names
    with open(clone / "server.log", "wb") as log:
        proc = subprocess.Popen(_SERVER, shell=True, cwd=clone, env=env_server, stdout=log,
                                stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while options_ping("127.0.0.1", sip_port, timeout_s=0.3) != 200 \
                or "sipmask.started" not in (clone / "server.log").read_text():
            # SIP answers before start-up ends (API, call records): wait for its last line
            assert proc.poll() is None, (clone / "server.log").read_text()
            assert time.monotonic() < deadline, (clone / "server.log").read_text()
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    text = (clone / "server.log").read_text()
    assert "sipmask.started" in text and str(clone / "sipmask.toml") in text, text
