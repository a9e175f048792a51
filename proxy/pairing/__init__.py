"""The pairing domain: sessions between two participants, their virtual numbers, expiry,
E.164 normalisation, encryption of real numbers at rest, the SQLite store and the in-memory
lookup cache used on every call. The stores (protocols and backends) are `stores`."""

from .cache import PairingCache
from .crypto import NumberVault, VaultError
from .model import (
    Cdr,
    ConflictError,
    Match,
    NotFound,
    PairingError,
    Participant,
    Session,
    SessionMode,
    SessionStatus,
)
from .normalize import InvalidNumber, mask_number, normalize_number, try_normalize
from .service import PairingService
from .stores import PairingStore, SqliteStore, StoreError

__all__ = [
    "Cdr",
    "ConflictError",
    "InvalidNumber",
    "Match",
    "NotFound",
    "NumberVault",
    "PairingCache",
    "PairingError",
    "PairingService",
    "PairingStore",
    "Participant",
    "Session",
    "SessionMode",
    "SessionStatus",
    "SqliteStore",
    "StoreError",
    "VaultError",
    "mask_number",
    "normalize_number",
    "try_normalize",
]
