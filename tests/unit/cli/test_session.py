"""``sipmask session ...`` (with ``pool ...``, where sessions get their numbers) on a real
store file, SQLite and Redis."""

from __future__ import annotations

import re

ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2 = "+15559990001", "+15559990002"


def test_pool_and_session_lifecycle(sipmask) -> None:
    assert sipmask("pool", "add", V1, V2)[0] == 0
    code, out, _ = sipmask("session", "create", "--a", ALICE, "--b", "555-123-0002",
                           "--ttl", "60", "--meta", "order=7")
    assert code == 0
    session_id = re.search(r"ps_[0-9a-f]+", out).group(0)
    assert ALICE not in out and re.search(r"A \+1 \*\*\*01 n_[0-9a-f]{12} via", out), out
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


def test_a_new_redis_store_gets_its_key_from_the_first_command_and_an_old_one_never_a_new_key(
        sipmask, redis_url: str, redis_client) -> None:
    """Before: `pool add` on a Redis store failed with "key file not found" until a worker had
    run once. A store with data keeps needing the key it was made with: no key file is made
    for it, so a command with the wrong (missing) key file fails instead of forking the key."""
    def on_redis(*args: str) -> tuple[int, str, str]:
        return sipmask("--backend", "redis", "--redis-url", redis_url, *args)

    assert not sipmask.key.exists()
    code, _, err = on_redis("pool", "add", V1)
    assert code == 0, err
    assert sipmask.key.exists()
    sipmask.key.rename(sipmask.key.with_suffix(".moved"))
    code, _, err = on_redis("pool", "list")
    assert code == 1 and "key file not found" in err
    assert not sipmask.key.exists()


def test_session_policy_options(sipmask) -> None:
    sipmask("pool", "add", V1, V2)
    code, out, err = sipmask("session", "create", "--a", ALICE, "--b", BOB,
                             "--window", "mon-fri 08:00-20:00 Asia/Singapore",
                             "--window", "sat 10:00-14:00 Europe/Paris",
                             "--direction", "a_to_b", "--single-use", "--max-call", "600")
    assert code == 0, err
    session_id = re.search(r"ps_[0-9a-f]+", out).group(0)
    assert "windows=mon-fri 08:00-20:00 Asia/Singapore; sat 10:00-14:00 Europe/Paris" in out
    assert "direction=a_to_b" in out and "single_use=True" in out and "max_call_s=600.0" in out
    code, out, err = sipmask("session", "update", session_id, "--no-windows", "--no-single-use",
                             "--ring-timeout", "15")
    assert code == 0, err
    code, out, _ = sipmask("session", "get", session_id)
    assert "windows=" not in out and "single_use" not in out
    assert "ring_timeout_s=15.0" in out and "direction=a_to_b" in out
    code, _, err = sipmask("session", "update", session_id, "--window", "mon 08:00-09:00 Nowhere/X")
    assert code == 1 and "calling_windows[0].tz" in err and "time zone" in err
    code, _, err = sipmask("session", "create", "--a", CAROL, "--b", BOB, "--window", "mon 08:00")
    assert code == 1 and "--window #1" in err
