"""Fixtures of the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.cli import main


@pytest.fixture
def sipmask(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """``sipmask --db s.db --key-file s.key ARGS`` in tmp_path; returns (code, stdout, stderr)."""
    monkeypatch.delenv("SIPMASK_KEY", raising=False)
    monkeypatch.delenv("SIPMASK_CONFIG", raising=False)
    db, key = tmp_path / "s.db", tmp_path / "s.key"

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--db", str(db), "--key-file", str(key), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    run.db, run.key = db, key  # type: ignore[attr-defined]
    return run
