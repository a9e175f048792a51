"""A real, private `redis-server` for the tests of the Redis store.

`redis_url` (session scope) starts one server on a free loopback port, with no persistence
(`--save "" --appendonly no`) in its own temporary directory, and kills it at the end;
`redis_client` flushes it before each test. A missing `redis-server` is a failure, not a skip:
CI installs it with scripts/system-deps.sh (``make test`` runs it first).

tests/unit/conftest.py offers both fixtures to every unit test module.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

__all__ = ["redis_client", "redis_url"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: the Redis store tests need it "
            "(run ./scripts/system-deps.sh, which installs the Debian package)",
            pytrace=False,
        )
    workdir: Path = tmp_path_factory.mktemp("redis")
    for _attempt in range(5):
        port = _free_port()
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(workdir), "--daemonize", "no",
             "--logfile", str(workdir / f"redis-{port}.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url, socket_connect_timeout=0.2)
        deadline, up = time.monotonic() + 10, False
        while not up and proc.poll() is None and time.monotonic() < deadline:
            try:
                up = bool(client.ping())
            except redis.ConnectionError:
                time.sleep(0.02)
        client.close()
        if up:
            break
        proc.kill()  # the port was taken between probe and bind, or it hung: try another
        proc.wait()
    else:
        log = "".join(p.read_text() for p in workdir.glob("redis-*.log"))
        pytest.fail(f"redis-server did not start:\n{log[-2000:]}", pytrace=False)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()
