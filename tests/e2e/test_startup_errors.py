"""Start-up failures of a real ``sipmask`` process: one line naming the key, exit 2, no traceback.

Each of these passed ``check-config`` as ok and then crashed ``run`` with a 25-27 line
traceback (issue 18): a SIP or API port already taken (Asterisk beside sipmask), a listen
address not on the host, a listen host that does not resolve, TLS files missing, a key file in
a directory that does not exist, a Redis store that is down, a rules file that is not valid.
Nothing here sends a packet: 192.0.2.1 (TEST-NET-1) is never routed, binding it just fails.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ROOT, free_port

pytestmark = pytest.mark.e2e

#: the console script of the venv running the tests (the checkout first on its path), else -m
_SCRIPT = Path(sys.executable).parent / "sipmask"
PROGRAM = (str(_SCRIPT),) if _SCRIPT.exists() else (sys.executable, "-m", "proxy")


def sipmask(workdir: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIPMASK_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([*PROGRAM, *args], cwd=workdir, capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL)


def config(workdir: Path, sip: str, *, api: str = "enabled = false", store: str = "") -> Path:
    path = workdir / "sipmask.toml"
    path.write_text(f"[sip]\n{sip}\n\n[api]\n{api}\n\n[store]\n{store}\n")
    return path


def assert_one_line(res: subprocess.CompletedProcess[str], key: str, *words: str) -> str:
    lines = res.stderr.splitlines()
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    assert lines[0].startswith("sipmask: ") and f": {key}: " in lines[0], lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def taken_udp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def taken_tcp() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", [["check-config"], ["run"]])
def test_sip_port_in_use(tmp_path: Path, taken_udp: int, command: list[str]) -> None:
    config(tmp_path, f'listen = ["udp:127.0.0.1:{taken_udp}"]')
    line = assert_one_line(sipmask(tmp_path, *command), "sip.listen[0]", "cannot bind",
                           "address already in use", "Asterisk", f"udp:127.0.0.1:{taken_udp}")
    # loadtest/runner.py retries a start whose port was taken: it looks for "bind"
    assert "bind" in line


def test_sip_tcp_port_in_use(tmp_path: Path, taken_tcp: int) -> None:
    config(tmp_path, f'listen = ["udp:127.0.0.1:{free_port()}", "tcp:127.0.0.1:{taken_tcp}"]')
    assert_one_line(sipmask(tmp_path, "run"), "sip.listen[1]", "address already in use")


@pytest.mark.parametrize("command", [["check-config"], ["run"]])
def test_api_port_in_use(tmp_path: Path, taken_tcp: int, command: list[str]) -> None:
    config(tmp_path, f'listen = ["udp:127.0.0.1:{free_port()}"]',
           api=f'listen = "127.0.0.1:{taken_tcp}"')
    assert_one_line(sipmask(tmp_path, *command), "api.listen", "address already in use")


@pytest.mark.parametrize("command", [["check-config"], ["run"]])
def test_listen_address_not_on_this_host(tmp_path: Path, command: list[str]) -> None:
    config(tmp_path, 'listen = ["udp:192.0.2.1:5060"]')
    assert_one_line(sipmask(tmp_path, *command), "sip.listen[0]", "192.0.2.1",
                    "not on this host")


@pytest.mark.parametrize("command", [["check-config"], ["run"]])
def test_listen_host_that_does_not_resolve(tmp_path: Path, command: list[str]) -> None:
    config(tmp_path, 'listen = ["udp:nonexistent.invalid:5060"]')
    assert_one_line(sipmask(tmp_path, *command), "sip.listen[0]", "nonexistent.invalid",
                    "cannot resolve")


@pytest.mark.parametrize("command", [["check-config"], ["run"]])
def test_tls_files_missing(tmp_path: Path, command: list[str]) -> None:
    config(tmp_path, f'listen = ["tls:127.0.0.1:{free_port()}"]\n'
                     'tls_cert = "certs/missing.pem"\ntls_key = "certs/missing.pem"')
    res = sipmask(tmp_path, *command)
    lines = res.stderr.splitlines()
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(lines) == 2, res.stderr
    missing = str(tmp_path / "certs" / "missing.pem")
    assert ": sip.tls_cert: " in lines[0] and missing in lines[0], lines
    assert ": sip.tls_key: " in lines[1] and missing in lines[1], lines


def test_tls_key_that_is_not_a_key(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    config(tmp_path, f'listen = ["tls:127.0.0.1:{free_port()}"]\n'
                     'tls_cert = "cert.pem"\ntls_key = "cert.pem"')
    assert_one_line(sipmask(tmp_path, "run"), "sip.tls_key", "cert.pem", "PEM")


@pytest.mark.parametrize("command", [["check-config"], ["run"]])
def test_key_directory_missing(tmp_path: Path, command: list[str]) -> None:
    config(tmp_path, f'listen = ["udp:127.0.0.1:{free_port()}"]', store='key_file = "keys/sipmask.key"')
    assert_one_line(sipmask(tmp_path, *command), "store.key_file", str(tmp_path / "keys"),
                    "does not exist")


@pytest.mark.parametrize("command", [["check-config"], ["run"]])
def test_redis_store_down(tmp_path: Path, command: list[str]) -> None:
    dead = free_port()  # nothing listens there
    config(tmp_path, f'listen = ["udp:127.0.0.1:{free_port()}"]',
           store=f'backend = "redis"\nredis_url = "redis://:hunter2@127.0.0.1:{dead}/0"')
    line = assert_one_line(sipmask(tmp_path, *command), "store.redis_url", f"127.0.0.1:{dead}",
                           "cannot reach the store")
    assert "hunter2" not in line


def test_invalid_rules_file(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text("[headers]\nnot_a_key = 1\n")
    path = config(tmp_path, f'listen = ["udp:127.0.0.1:{free_port()}"]')
    path.write_text('rules_file = "rules.toml"\n' + path.read_text())
    assert_one_line(sipmask(tmp_path, "run"), "rules_file", "rules.toml")


def test_every_problem_is_reported_at_once(tmp_path: Path, taken_udp: int) -> None:
    config(tmp_path, f'listen = ["udp:127.0.0.1:{taken_udp}", "udp:192.0.2.1:5060"]',
           store='key_file = "keys/sipmask.key"\npath = "db/sipmask.db"')
    res = sipmask(tmp_path, "check-config")
    keys = [line.split(": ")[2] for line in res.stderr.splitlines()]
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert keys == ["sip.listen[0]", "sip.listen[1]", "store.key_file", "store.path"], res.stderr


def test_a_config_that_can_start_is_ok(tmp_path: Path) -> None:
    config(tmp_path, f'listen = ["udp:127.0.0.1:{free_port()}", "tcp:127.0.0.1:{free_port()}"]',
           api=f'listen = "127.0.0.1:{free_port()}"')
    res = sipmask(tmp_path, "check-config")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.startswith(f"ok: {tmp_path / 'sipmask.toml'}")
    assert f"store sqlite {tmp_path / 'sipmask.db'}" in res.stdout
    assert not (tmp_path / "sipmask.db").exists() and not (tmp_path / "sipmask.key").exists()
