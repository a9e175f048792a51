"""What docs/architecture.md promises about the package's shape, checked: every module imports
on its own in a fresh interpreter (a hidden import cycle shows only when a module is the first
one imported, as aiohttp's test_circular_imports checks), and no module outgrows one sitting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("proxy", "loadtest")
#: conventions §5: a module is a room readable in one sitting
MAX_LINES = 600


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


MODULES = _modules()


def test_the_module_list_is_not_empty() -> None:
    assert "proxy.b2bua.b2bua" in MODULES and "proxy.sip.parser" in MODULES and len(MODULES) > 80


def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    # one interpreter per module, run a few at a time: ~100 modules in a few seconds
    script = "import importlib, sys; importlib.import_module(sys.argv[1])"
    failures = []
    procs = []
    for name in MODULES:
        procs.append((name, subprocess.Popen([sys.executable, "-c", script, name], cwd=ROOT,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
        if len(procs) >= 8:
            failures += _reap(procs.pop(0))
    for item in procs:
        failures += _reap(item)
    assert not failures, "\n\n".join(failures)


def _reap(item: tuple[str, subprocess.Popen[bytes]]) -> list[str]:
    name, proc = item
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        return [f"{name}: exit {proc.returncode}\n{err.decode(errors='replace')[-2000:]}"]
    return []


@pytest.mark.parametrize("package", ["proxy"])
def test_no_module_is_over_600_lines(package: str) -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"
