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
