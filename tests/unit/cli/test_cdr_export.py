"""``sipmask cdr export`` (proxy/cli/cdr.py) as a real subprocess on a real SQLite file: CSV
and JSON lines of 10,000 CDRs to stdout and to a file, the range and session filters, errors
in one line."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from proxy.pairing import Cdr, NumberVault, SqliteStore

ROOT = Path(__file__).resolve().parents[3]
ALICE, BOB = "+15551230001", "+15551230002"
T0 = 1_700_000_000.0
FIELDS = [f.name for f in fields(Cdr)]
SESSION = "ps_00000000000000aa"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store of 10,000 CDRs, one a second from T0; every tenth of session SESSION."""
    vault = NumberVault.from_key_file(tmp_path / "s.key", create=True)
    store = SqliteStore(tmp_path / "s.db", vault)
    caller, callee = vault.token(ALICE), vault.token(BOB)
    store.record_cdrs(
        Cdr(vault.token(f"call-{i}"), SESSION if i % 10 == 0 else None, caller, callee,
            T0 + i - 60, T0 + i - 50, T0 + i, "answered", 200, "bye, from A", 50.0)
        for i in range(10_000))
    store.close()
    return tmp_path / "s.db"


def sipmask(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SIPMASK_CONFIG", None)
    env.pop("SIPMASK_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "proxy", "--db", str(db), "--key-file",
         str(db.with_suffix(".key")), "cdr", "export", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_csv_of_10000_cdrs_to_stdout(db: Path) -> None:
    res = sipmask(db, "--from", "2023-11-14T22:13:20Z", "--to", str(int(T0) + 10_000))
    assert res.returncode == 0, res.stderr
    rows = list(csv.reader(io.StringIO(res.stdout, newline="")))
    assert rows[0] == FIELDS and len(rows) == 10_001
    assert rows[1][FIELDS.index("ended_at")] == "2023-11-14T22:13:20.000Z"
    assert rows[-1][FIELDS.index("ended_at")] == "2023-11-15T00:59:59.000Z"
    assert rows[1][FIELDS.index("cause")] == "bye, from A"
    assert ALICE not in res.stdout and ALICE[1:] not in res.stdout and BOB[1:] not in res.stdout


def test_jsonl_of_a_range_and_a_session_to_a_file(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "cdrs.jsonl"
    out.parent.mkdir()
    res = sipmask(db, "--from", str(T0 + 100), "--to", "2023-11-14T22:30:00+00:00",
                  "--format", "jsonl", "--session", SESSION, "--output", str(out))
    assert res.returncode == 0 and res.stdout == ""
    assert "exported 90 CDRs" in res.stderr
    items = [json.loads(line) for line in out.read_text().splitlines()]
    # [T0+100, T0+1000): every tenth second belongs to SESSION
    assert len(items) == 90 and {i["session_id"] for i in items} == {SESSION}
    assert list(items[0]) == FIELDS and items[0]["ended_at"] == "2023-11-14T22:15:00.000Z"
    assert os.listdir(out.parent) == ["cdrs.jsonl"]  # no partial file left beside it


def test_errors_are_one_line_and_leave_no_file(db: Path, tmp_path: Path) -> None:
    out = tmp_path / "never.csv"
    res = sipmask(db, "--from", str(T0 + 10), "--to", str(T0), "--output", str(out))
    assert res.returncode == 1 and res.stderr == "error: --to must be later than --from\n"
    res = sipmask(db, "--from", "yesterday", "--to", str(T0))
    assert res.returncode == 2 and "argument --from: expected an RFC 3339" in res.stderr
    db.with_suffix(".key").write_text(bytes(64).hex())  # another key than the store's
    res = sipmask(db, "--from", str(T0), "--to", str(T0 + 10), "--output", str(out))
    assert res.returncode == 1 and len(res.stderr.splitlines()) == 1
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr
    assert not out.exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".never")]
