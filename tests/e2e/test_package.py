"""The package as a user installs it: a wheel built from the sources, installed in a clean venv
outside the checkout, started from a directory that is not the checkout, places a masked call.

This is what broke for users: ``rules/default.toml`` was not package data, so every install
but the editable one died at start-up with a RulesError traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .conftest import A_VIRTUAL, B_PREFIX, CALLEE_IP, ROOT, assert_isolated, assert_sipp_ok, free_port

pytestmark = pytest.mark.e2e

#: what a build needs: the project's metadata and its two packages (no tests, docs, venv)
_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "proxy", "loadtest")


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIPMASK_", "PYTHON", "VIRTUAL_ENV"))}
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, f"$ {' '.join(cmd)}\nexit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only the wheel (and its runtime dependencies, at the pinned versions)."""
    base = tmp_path_factory.mktemp("package")
    src = base / "src"
    src.mkdir()
    for name in _SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    dist = base / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)], cwd=base)
    (wheel,) = dist.glob("sipmask-*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    _run([str(venv / "bin" / "pip"), "install", "-q", "-c", str(ROOT / "constraints.txt"), str(wheel)], cwd=base)
    shutil.rmtree(src)  # nothing may be read from a source tree any more
    return venv


def test_the_wheel_carries_the_files_sipmask_reads_at_run_time(installed: Path) -> None:
    (wheel,) = (installed.parent / "dist").glob("sipmask-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "proxy/rules/default.toml" in names
    assert "proxy/cli/data/sipmask.example.toml" in names
    lua = ROOT / "proxy" / "pairing" / "stores" / "redis"
    assert {f"proxy/pairing/stores/redis/{p.name}" for p in lua.glob("*.lua")} <= names
    assert {f"loadtest/scenarios/{p.name}" for p in (ROOT / "loadtest" / "scenarios").glob("*.xml")} <= names
    assert any(n.endswith("/licenses/LICENSE") for n in names), sorted(names)[-8:]


def test_installed_package_is_the_one_imported_and_has_no_test_toolchain(installed: Path, tmp_path: Path) -> None:
    py = str(installed / "bin" / "python")
    where = _run([py, "-c", "import proxy, proxy.config as c; print(proxy.__file__); print(c.DEFAULT_RULES_FILE)"],
                 cwd=tmp_path).stdout.split()
    assert all(Path(p).is_relative_to(installed) for p in where), where
    assert Path(where[1]).is_file()
    missing = subprocess.run([py, "-c", "import pytest"], cwd=tmp_path, capture_output=True)
    assert missing.returncode != 0, "the runtime install pulled in the test toolchain"


def test_installed_init_and_check_config_find_the_packaged_files(installed: Path, tmp_path: Path) -> None:
    sipmask = str(installed / "bin" / "sipmask")
    _run([sipmask, "init"], cwd=tmp_path)  # the example config is package data too
    config = tmp_path / "sipmask.toml"
    # the example's ports (5060, 8080) may be taken on a shared machine; check-config binds them
    config.write_text(config.read_text()
                      .replace('"udp:127.0.0.1:5060"', f'"udp:127.0.0.1:{free_port()}"')
                      .replace('"127.0.0.1:8080"', f'"127.0.0.1:{free_port()}"'))
    res = _run([sipmask, "check-config"], cwd=tmp_path)  # found as ./sipmask.toml
    assert res.stdout.startswith(f"ok: {config} "), res.stdout
    assert str(installed) in res.stdout  # the rules file inside the installed package


def test_installed_sipmask_version_is_the_wheels(installed: Path, tmp_path: Path) -> None:
    (wheel,) = (installed.parent / "dist").glob("sipmask-*.whl")
    version = wheel.name.split("-")[1]
    res = _run([str(installed / "bin" / "sipmask"), "--version"], cwd=tmp_path)
    assert res.stdout == f"sipmask {version}\n"


def test_installed_sipmask_places_a_masked_call(installed: Path, sipp, sipmask_factory) -> None:
    callee = sipp.start_uas("uas_basic.xml", calls=2)
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])],
                         program=[str(installed / "bin" / "sipmask")])
    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL, calls=2)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    assert "Traceback" not in sm.stderr()
    assert_isolated(caller, callee)
