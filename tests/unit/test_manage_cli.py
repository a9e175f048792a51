"""``sipmask session|pool|token|audit`` on a real store file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.pairing import NumberVault, SqliteStore
from proxy.pairing.admin import hash_secret

from .redis_server import redis_client, redis_url  # noqa: F401  (fixtures)

ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2 = "+15559990001", "+15559990002"


@pytest.fixture
def sipmask(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SIPMASK_KEY", raising=False)
    monkeypatch.delenv("SIPMASK_CONFIG", raising=False)
    db, key = tmp_path / "s.db", tmp_path / "s.key"

    def run(*args: str) -> tuple[int, str, str]:
        code = main(["--db", str(db), "--key-file", str(key), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    run.db, run.key = db, key  # type: ignore[attr-defined]
    return run


def test_pool_and_session_lifecycle(sipmask) -> None:
    assert sipmask("pool", "add", V1, V2)[0] == 0
    code, out, _ = sipmask("session", "create", "--a", ALICE, "--b", "555-123-0002",
                           "--ttl", "60", "--meta", "order=7")
    assert code == 0
    session_id = re.search(r"ps_[0-9a-f]+", out).group(0)
    assert ALICE not in out and "+1555***0001" in out
    code, out, _ = sipmask("session", "list", "--participant", BOB, "--reveal")
    assert session_id in out and BOB in out
    code, out, _ = sipmask("session", "list", "--meta", "order=8")
    assert "no sessions" in out
    assert sipmask("session", "update", session_id, "--no-ttl", "--expires-in", "600")[0] == 0
    code, out, _ = sipmask("session", "get", session_id)
    assert "expires=" in out and "ttl=" not in out
    code, out, err = sipmask("pool", "remove", V1)
    assert code == 1 and "still used" in err
    assert sipmask("pool", "drain", V1)[0] == 0
    assert "draining" in sipmask("pool", "list", "--status", "draining")[1]
    assert sipmask("session", "close", session_id)[1].startswith("closed")
    assert "already closed" in sipmask("session", "close", session_id)[1]
    assert sipmask("pool", "remove", V1)[0] == 0


def test_exhaustion_is_one_line_without_the_number(sipmask) -> None:
    sipmask("pool", "add", V1)
    sipmask("session", "create", "--a", ALICE, "--b", BOB)
    code, out, err = sipmask("session", "create", "--a", CAROL, "--b", BOB)
    assert code == 1 and err.count("\n") == 1
    assert "pool exhausted for this participant (B)" in err
    assert BOB not in err and BOB[2:] not in err


def test_token_create_prints_the_secret_once_and_stores_its_hash(sipmask) -> None:
    code, out, _ = sipmask("token", "create", "ci-bot", "--role", "operator")
    assert code == 0
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("smk_")
    listing = sipmask("token", "list")[1]
    assert "ci-bot" in listing and "role=operator" in listing and secret not in listing
    store = SqliteStore(sipmask.db, NumberVault.from_key_file(sipmask.key, create=False))
    assert store.find_token(hash_secret(secret)).name == "ci-bot"
    raw = sipmask.db.read_bytes() + b"".join(
        p.read_bytes() for p in sipmask.db.parent.glob("s.db-*"))
    assert secret.encode() not in raw
    store.close()
    assert sipmask("token", "revoke", "ci-bot")[0] == 0
    assert "revoked=" in sipmask("token", "list")[1]


def test_audit_lists_cli_changes_without_numbers(sipmask) -> None:
    sipmask("pool", "add", V1)
    sipmask("session", "create", "--a", ALICE, "--b", BOB)
    code, out, _ = sipmask("audit", "list")
    assert code == 0
    assert "session.create" in out and "pool.add" in out and "cli:" in out
    for number in (ALICE, BOB):
        assert number not in out and number[2:] not in out


def test_pairing_commands_still_work(sipmask) -> None:
    code, out, _ = sipmask("pairing", "add", "--a", ALICE, "--a-virtual", V1, "--b", BOB,
                           "--b-virtual", V2)
    assert code == 0
    assert "ps_" in sipmask("session", "list")[1]


def test_the_commands_work_on_a_redis_store(sipmask, redis_url: str, redis_client) -> None:
    assert sipmask("pool", "list")[0] == 0  # makes the key file (a Redis store needs one)

    def on_redis(*args: str) -> tuple[int, str, str]:
        return sipmask("--backend", "redis", "--redis-url", redis_url, *args)

    assert on_redis("pool", "add", V1)[0] == 0
    code, out, err = on_redis("session", "create", "--a", ALICE, "--b", BOB, "--ttl", "60")
    assert code == 0, err
    session_id = re.search(r"ps_[0-9a-f]+", out).group(0)
    assert session_id in on_redis("session", "list", "--participant", BOB)[1]
    code, _, err = on_redis("session", "create", "--a", CAROL, "--b", BOB)
    assert code == 1 and "pool exhausted for this participant (B)" in err
    assert on_redis("session", "close", session_id)[1].startswith("closed")
    assert on_redis("pool", "remove", V1)[0] == 0
    assert "session.create" in on_redis("audit", "list")[1]
    assert redis_client.hlen("sipmask:pool") == 0 and redis_client.exists("sipmask:audit")
