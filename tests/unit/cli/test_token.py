"""``sipmask token create|list|revoke`` on a real store file."""

from __future__ import annotations

from proxy.pairing import NumberVault, SqliteStore
from proxy.pairing.admin import hash_secret


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


def test_token_create_with_an_expiry_and_list_shows_it(sipmask, monkeypatch) -> None:
    import time

    now = 1_900_000_000.0
    monkeypatch.setattr(time, "time", lambda: now)
    code, out, err = sipmask("token", "create", "ci", "--role", "read-only", "--expires-in", "30d")
    assert code == 0, err
    assert "expires=2030-04-16T17:46:40Z" in out  # now + 30 days
    code, out, _ = sipmask("token", "create", "dash", "--role", "read-only",
                           "--expires-at", "2030-01-01T00:00:00+01:00")
    assert code == 0 and "expires=2029-12-31T23:00:00Z" in out
    assert sipmask("token", "create", "ops", "--role", "admin")[0] == 0
    listing = sipmask("token", "list")[1].splitlines()
    assert "expires=2030-04-16T17:46:40Z  active" in listing[0]
    assert "expires=never  active" in listing[2]
    now += 31 * 86400
    listing = sipmask("token", "list")[1].splitlines()
    assert listing[0].endswith("expires=2030-04-16T17:46:40Z  expired")
    assert listing[1].endswith("expired") and listing[2].endswith("active")
    store = SqliteStore(sipmask.db, NumberVault.from_key_file(sipmask.key, create=False))
    assert [t.expires_at for t in store.list_tokens()] == [now - 86400, 1_893_452_400.0, None]
    store.close()


def test_token_expiry_options_refuse_bad_values(sipmask) -> None:
    import pytest

    for option, value in (("--expires-in", "30x"), ("--expires-in", "0d"), ("--expires-in", "-1"),
                          ("--expires-at", "tomorrow"), ("--expires-at", "2030-01-01T00:00:00"),
                          ("--expires-at", "2001-01-01T00:00:00Z")):
        try:
            code, _, err = sipmask("token", "create", "x", "--role", "admin", option, value)
        except SystemExit as exc:  # argparse: exit 2 with the option named
            code = exc.code
        assert code != 0, (option, value)
    with pytest.raises(SystemExit):
        sipmask("token", "create", "y", "--role", "admin", "--expires-in", "1d",
                "--expires-at", "2040-01-01T00:00:00Z")
    assert sipmask("token", "list")[1].strip() == "no tokens"
