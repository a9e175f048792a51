"""NumberVault: AES-GCM at rest, HMAC index, log tokens, key files."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from proxy.pairing import NumberVault, VaultError

SECRET = bytes(range(64))


def test_encrypt_decrypt_round_trip_and_random_nonce() -> None:
    vault = NumberVault.from_secret(SECRET)
    first, second = vault.encrypt("+15551230001"), vault.encrypt("+15551230001")
    assert first != second
    assert b"5551230001" not in first
    assert vault.decrypt(first) == vault.decrypt(second) == "+15551230001"


def test_decrypt_with_another_key_fails_cleanly() -> None:
    blob = NumberVault.from_secret(SECRET).encrypt("+15551230001")
    with pytest.raises(VaultError):
        NumberVault.from_secret(os.urandom(64)).decrypt(blob)


def test_tampered_ciphertext_is_refused() -> None:
    vault = NumberVault.from_secret(SECRET)
    blob = bytearray(vault.encrypt("+15551230001"))
    blob[-1] ^= 1
    with pytest.raises(VaultError):
        vault.decrypt(bytes(blob))
    with pytest.raises(VaultError):
        vault.decrypt(b"\x02garbage")


def test_index_is_deterministic_keyed_and_distinct_from_token() -> None:
    vault = NumberVault.from_secret(SECRET)
    other = NumberVault.from_secret(bytes(reversed(SECRET)))
    assert vault.index("+15551230001") == vault.index("+15551230001")
    assert vault.index("+15551230001") != vault.index("+15551230002")
    assert vault.index("+15551230001") != other.index("+15551230001")
    assert vault.token("+15551230001") not in vault.index("+15551230001")


def test_token_shape_and_stability() -> None:
    token = NumberVault.from_secret(SECRET).token("+15551230001")
    assert token.startswith("n_") and len(token) == 14
    int(token[2:], 16)
    assert NumberVault.from_secret(SECRET).token("+15551230001") == token


@pytest.mark.parametrize("key", [bytes(32), bytes(range(64)), bytes(range(65)), b"k" * 200])
def test_token_is_the_rfc2104_hmac_of_the_token_key(key: bytes) -> None:
    """The precomputed keyed states give exactly hmac.new's digest, for keys shorter than,
    equal to and longer than SHA-256's block: tokens already written to CDRs stay valid."""
    import hashlib
    import hmac

    vault = NumberVault(bytes(32), bytes(32), key)
    for number in ("+15551230001", "", "a-call-id@192.0.2.1", "é" * 50):
        expected = hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:12]
        assert vault.token(number) == "n_" + expected


def test_token_key_is_the_key_tokens_are_made_with() -> None:
    """The public name the log Redactor is built from (app.py): the vault's own token key."""
    key = bytes(range(32, 64))
    assert NumberVault(bytes(32), bytes(32), key).token_key == key
    assert NumberVault.from_secret(SECRET).token_key == NumberVault.from_secret(SECRET).token_key
    assert NumberVault.from_secret(SECRET).token_key != NumberVault.from_secret(os.urandom(64)).token_key


def test_short_secret_is_refused() -> None:
    with pytest.raises(VaultError):
        NumberVault.from_secret(b"short")


def test_key_file_is_created_with_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "sipmask.key"
    first = NumberVault.from_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 64
    second = NumberVault.from_key_file(path)
    assert second.decrypt(first.encrypt("+15551230001")) == "+15551230001"
    assert first.index("+15551230001") == second.index("+15551230001")


def test_key_file_accepts_base64(tmp_path: Path) -> None:
    path = tmp_path / "b64.key"
    path.write_text(base64.b64encode(SECRET).decode() + "\n")
    vault = NumberVault.from_key_file(path, create=False)
    assert vault.index("+15551230001") == NumberVault.from_secret(SECRET).index("+15551230001")


def test_missing_key_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="not found"):
        NumberVault.from_key_file(tmp_path / "absent.key", create=False)


@pytest.mark.parametrize("content", ["not a key!", "abcd", base64.b64encode(b"x" * 16).decode()])
def test_bad_key_file_content(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(VaultError):
        NumberVault.from_key_file(path, create=False)


def test_key_from_environment_takes_precedence_over_the_file(tmp_path) -> None:
    from proxy.pairing.crypto import KEY_ENV, load_vault

    secret = bytes(range(64))
    from_env = load_vault(tmp_path / "absent.key", env={KEY_ENV: secret.hex()})
    assert not (tmp_path / "absent.key").exists()  # the env key never creates a file
    assert from_env.token("+15551234567") == NumberVault.from_secret(secret).token("+15551234567")
    from_file = load_vault(tmp_path / "made.key", env={KEY_ENV: "  "})
    assert (tmp_path / "made.key").exists()
    assert from_file.token("+15551234567") != from_env.token("+15551234567")


def test_bad_key_in_environment_names_the_variable(tmp_path) -> None:
    from proxy.pairing.crypto import KEY_ENV, load_vault

    with pytest.raises(VaultError, match=r"\$SIPMASK_KEY: key must be hex or base64"):
        load_vault(tmp_path / "k", env={KEY_ENV: "not a key!"})
    with pytest.raises(VaultError, match=r"\$SIPMASK_KEY: key is 4 bytes"):
        load_vault(tmp_path / "k", env={KEY_ENV: "00112233"})
