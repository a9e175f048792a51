"""Keys for numbers at rest: AES-GCM encryption, a keyed HMAC index and log tokens.

One master secret (a key file of 64 random bytes) is stretched with HKDF-SHA256 into three
independent keys, so that a leaked index or token never helps against the ciphertexts:

- *enc*: AES-256-GCM over each real number stored in the database;
- *index*: HMAC-SHA256 of a number, stored next to the ciphertext so the store can find a
  number's sessions with an ordinary SQL index (equal numbers give equal index values);
- *token*: a short HMAC pseudonym (``n_`` + 12 hex) for logs and CDRs, stable across restarts
  for a given key file, so records of one caller can be correlated without revealing it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .model import PairingError

__all__ = ["NumberVault", "VaultError", "MASTER_SECRET_BYTES", "KEY_ENV", "load_vault"]

MASTER_SECRET_BYTES = 64
_MIN_SECRET_BYTES = 32
_BLOB_VERSION = b"\x01"
_NONCE_BYTES = 12
_AAD = b"sipmask:number:v1"
KEY_ENV = "SIPMASK_KEY"
"""Environment variable that, when set, holds the master secret (hex or base64) and takes
precedence over the key file (for containers that inject secrets as variables)."""


class VaultError(PairingError):
    """Bad key file or a ciphertext that does not open under this key."""


def _derive(secret: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


def _parse_key_text(text: str, path: Path | str) -> bytes:
    text = text.strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        try:
            secret = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise VaultError(f"{path}: key must be hex or base64 bytes") from None
    if len(secret) < _MIN_SECRET_BYTES:
        raise VaultError(
            f"{path}: key is {len(secret)} bytes, need at least {_MIN_SECRET_BYTES} "
            f"({MASTER_SECRET_BYTES} recommended)"
        )
    return secret


class NumberVault:
    """Encrypts, indexes and tokenises real phone numbers under one master secret."""

    __slots__ = ("_aead", "_index_key", "_token_key", "_token_inner", "_token_outer")

    def __init__(self, enc_key: bytes, index_key: bytes, token_key: bytes) -> None:
        """Prefer `from_secret` / `from_key_file`; this takes already-derived 32-byte keys."""
        self._aead = AESGCM(enc_key)
        self._index_key = index_key
        self._token_key = token_key
        # HMAC-SHA256 (RFC 2104) with its two keyed states hashed once: a token is then two
        # state copies and two updates (the same digest as hmac.new, at half its cost; one
        # per call, for the CDR's Call-ID token)
        key = token_key if len(token_key) <= 64 else hashlib.sha256(token_key).digest()
        block = key.ljust(64, b"\0")  # SHA-256's block: longer keys are hashed first
        self._token_inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._token_outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))

    @classmethod
    def from_secret(cls, secret: bytes) -> NumberVault:
        """Derive the enc/index/token keys from a master secret of at least 32 bytes."""
        if len(secret) < _MIN_SECRET_BYTES:
            raise VaultError(f"master secret must be at least {_MIN_SECRET_BYTES} bytes")
        return cls(
            _derive(secret, b"sipmask/v1/enc"),
            _derive(secret, b"sipmask/v1/index"),
            _derive(secret, b"sipmask/v1/token"),
        )

    @classmethod
    def from_key_file(cls, path: str | os.PathLike[str], create: bool = True) -> NumberVault:
        """Load the master secret from `path` (hex or base64 text).

        With `create`, a missing file is made with 64 random bytes (hex) and mode 0600; the
        file is created exclusively so two processes starting together agree on one key.
        """
        key_path = Path(path)
        if create and not key_path.exists():
            try:
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process won the race; read its key below
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(os.urandom(MASTER_SECRET_BYTES).hex() + "\n")
        try:
            text = key_path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise VaultError(f"{key_path}: key file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise VaultError(f"{key_path}: cannot read key file ({exc.__class__.__name__})") from None
        return cls.from_secret(_parse_key_text(text, key_path))

    @property
    def token_key(self) -> bytes:
        """The HMAC key of `token`. The log Redactor keys its tokens with it too, so every
        pseudonym sipmask writes (CDRs, audit, logs) comes from the one token key."""
        return self._token_key

    def index(self, number: str) -> str:
        """Keyed HMAC-SHA256 of `number` (hex): equal numbers give equal indexes."""
        return hmac.new(self._index_key, number.encode(), hashlib.sha256).hexdigest()

    def encrypt(self, number: str) -> bytes:
        """AES-GCM ciphertext of `number`: version byte, 12-byte random nonce, ciphertext+tag."""
        nonce = os.urandom(_NONCE_BYTES)
        return _BLOB_VERSION + nonce + self._aead.encrypt(nonce, number.encode(), _AAD)

    def decrypt(self, blob: bytes) -> str:
        """Open a blob made by `encrypt`; raise `VaultError` if it was not made with this key."""
        if blob[:1] != _BLOB_VERSION or len(blob) < 1 + _NONCE_BYTES + 16:
            raise VaultError("unknown ciphertext format")
        nonce = blob[1 : 1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + _NONCE_BYTES :], _AAD).decode()
        except InvalidTag:
            raise VaultError("ciphertext does not open with this key (wrong key file?)") from None

    def token(self, number: str) -> str:
        """Short stable pseudonym for logs and CDRs: ``n_`` + 12 hex chars of a keyed HMAC of
        the text's bytes (non-UTF-8 bytes carried as surrogates are tokened as the bytes)."""
        inner = self._token_inner.copy()
        # the text may hold any bytes a peer sent (a Call-ID is decoded with surrogateescape):
        # token those bytes; a strict encode would raise on them and lose the call's CDR
        inner.update(number.encode("utf-8", "surrogateescape"))
        outer = self._token_outer.copy()
        outer.update(inner.digest())
        return "n_" + outer.hexdigest()[:12]


def load_vault(
    key_file: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    create: bool = True,
) -> NumberVault:
    """The vault of the running configuration: from ``$SIPMASK_KEY`` when it is set (and
    not empty), else from `key_file` (created when missing and `create`)."""
    env = os.environ if env is None else env
    text = env.get(KEY_ENV, "").strip()
    if text:
        return NumberVault.from_secret(_parse_key_text(text, f"${KEY_ENV}"))
    return NumberVault.from_key_file(key_file, create=create)
