"""The Redis backend: one pairing table shared by several sipmask workers (`RedisStore`).

`store.py` holds sessions, CDRs, the change feed and key rotation; `pool.py` and `admin.py`
are its mixins for the administration side; every check-then-write is a Lua script, one
``.lua`` file each beside them, read once by `scripts.py`.
"""

from .store import DEFAULT_PREFIX, SCHEMA, RedisStore

__all__ = ["DEFAULT_PREFIX", "SCHEMA", "RedisStore"]
