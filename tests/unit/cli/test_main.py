"""The ``sipmask`` command as a whole (proxy/cli/__init__.py): ``--version``, help texts."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from proxy.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[3]


def pyproject_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"sipmask {metadata.version('sipmask')}\n"


def test_version_without_an_installed_distribution_is_pyprojects(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out == f"sipmask {pyproject_version()}\n" and out != "sipmask unknown\n"


def test_python_dash_m_proxy_is_sipmask() -> None:
    res = subprocess.run([sys.executable, "-m", "proxy", "--version"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stdout.startswith("sipmask "), res.stderr


def test_every_option_and_argument_has_a_help_text(monkeypatch: pytest.MonkeyPatch) -> None:
    added: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    real = argparse.ArgumentParser.add_argument

    def recording(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> argparse.Action:
        added.append((args, kwargs))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(argparse.ArgumentParser, "add_argument", recording)
    build_parser()
    assert len(added) > 50
    missing = [args for args, kwargs in added if not kwargs.get("help")]
    assert not missing, f"options without help: {missing}"
