"""What only the Redis side of the `ApiStore` contract has to show: allocation is atomic
across sipmask instances, no real number reaches a key or a value, the open-session counts
and participant index survive rotation and purge, and a table written before the pool
existed is migrated on open. (The shared contract: test_pairing_pool.py and
test_pairing_admin_store.py, parametrised over both stores.)"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis

from proxy.pairing import ConflictError, NumberVault, Participant
from proxy.pairing.records import AuditEntry, IdempotencyRecord, SessionFilter
from proxy.pairing.stores import ApiStore
from proxy.pairing.stores.redis import RedisStore

SECRET, OTHER_SECRET = bytes(range(64)), bytes(range(1, 65))
T0 = 1_700_000_000.0
ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2, V3 = "+15559990001", "+15559990002", "+15559990003"

Factory = Callable[[], RedisStore]


@pytest.fixture
def open_store(redis_client: redis.Redis, redis_url: str) -> Iterator[Factory]:
    opened: list[RedisStore] = []

    def make() -> RedisStore:
        opened.append(RedisStore.from_url(redis_url, NumberVault.from_secret(SECRET)))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def test_redis_store_implements_the_api_store_protocol(open_store: Factory) -> None:
    assert isinstance(open_store(), ApiStore)


def test_two_instances_allocating_at_once_never_double_book_a_participant(
    open_store: Factory,
) -> None:
    first, second = open_store(), open_store()
    first.add_pool_number(V1, T0)
    first.add_pool_number(V2, T0)
    second.add_pool_number(V3, T0)
    barrier = threading.Barrier(12)
    outcomes: list[str] = []

    def allocate(store: RedisStore, n: int) -> None:
        barrier.wait()
        try:
            outcomes.append(store.allocate_session(ALICE, f"+1555777{n:04d}", now=T0).a.virtual)
        except ConflictError as exc:
            outcomes.append(str(exc).split(":")[0])

    threads = [threading.Thread(target=allocate, args=((first, second)[n % 2], n))
               for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = Counter(outcomes)
    assert counts == {V1: 1, V2: 1, V3: 1, "pool exhausted for this participant (A)": 9}
    assert sum(p.open_sessions for p in first.list_pool_numbers()) == 6  # 3 sessions, 2 sides


def test_ties_are_broken_at_random(open_store: Factory, redis_client: redis.Redis) -> None:
    firsts: Counter[str] = Counter()
    for seed in range(12):
        redis_client.flushall()
        store = open_store()
        store.alloc_random = random.Random(seed)
        for number in (V1, V2, V3):
            store.add_pool_number(number, T0)
        firsts[store.allocate_session(ALICE, BOB, now=T0).a.virtual] += 1
    assert len(firsts) > 1


def _everything(client: redis.Redis) -> bytes:
    """Every key name and every value of every type, concatenated."""
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key)
        if kind == b"string":
            parts.append(client.get(key) or b"")
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                parts += [field, value]
        elif kind == b"zset":
            parts += client.zrange(key, 0, -1)
        elif kind == b"set":
            parts += list(client.smembers(key))
        else:
            raise AssertionError(f"unexpected key type {kind!r}")
    return b"\n".join(parts)


def test_no_real_number_in_any_key_or_value(open_store: Factory,
                                            redis_client: redis.Redis) -> None:
    store = open_store()
    store.add_pool_number(V1, T0)
    session = store.allocate_session(ALICE, BOB, ttl_s=60, metadata={"order": "o-1"}, now=T0)
    store.update_session(session.id, expires_at=T0 + 500, now=T0 + 1)
    store.find_sessions(SessionFilter(participant=ALICE), now=T0 + 1)
    store.create_token("ops", "operator", "h" * 64, T0)
    store.record_audit(AuditEntry(T0, "cli:root", "session.create", session.id,
                                  {"a": NumberVault.from_secret(SECRET).token(ALICE)}))
    # a client may put anything in its Idempotency-Key, a phone number included
    store.put_idempotency(IdempotencyRecord("tok_1", CAROL, "hash", session.id, T0))
    assert store.get_idempotency("tok_1", CAROL) is not None
    raw = _everything(redis_client)
    assert V1[2:].encode() in raw  # pool numbers are the operator's own: the grep works
    for number in (ALICE, BOB, CAROL):
        assert number[2:].encode() not in raw, number


def test_counts_and_participant_index_survive_rotation_and_purge(
    open_store: Factory, redis_url: str,
) -> None:
    store = open_store()
    store.add_pool_number(V1, T0)
    kept = store.allocate_session(ALICE, BOB, now=T0)
    ended = store.allocate_session(CAROL, BOB, virtual_b=V2, now=T0)
    store.close_session(ended.id, T0 + 1)
    new_vault = NumberVault.from_secret(OTHER_SECRET)
    store.rotate_key(new_vault)
    rotated = RedisStore.from_url(redis_url, new_vault)
    try:
        assert rotated.get_pool_number(V1).open_sessions == 2
        ids = [s.id for s in rotated.find_sessions(SessionFilter(participant=BOB), now=T0).items]
        assert ids == [kept.id, ended.id]
        assert rotated.purge(older_than=T0 + 10) == (1, 0)
        ids = [s.id for s in rotated.find_sessions(SessionFilter(participant=BOB), now=T0).items]
        assert ids == [kept.id]
        with pytest.raises(ConflictError, match=r"exhausted for this participant \(A\)"):
            rotated.allocate_session(ALICE, CAROL, now=T0 + 20)  # still busy under the new key
    finally:
        rotated.close()


def test_a_table_written_before_the_pool_is_migrated_on_open(
    open_store: Factory, redis_client: redis.Redis,
) -> None:
    store = open_store()
    open_one = store.create_session(Participant(ALICE, V1), Participant(BOB, V1), now=T0)
    closed = store.create_session(Participant(CAROL, V2), Participant(BOB, V2), now=T0)
    store.close_session(closed.id, T0 + 1)
    # what a schema-1 table lacks: counts, per-number sets, participant index, marks
    for pattern in ("sipmask:vload", "sipmask:vs:*", "sipmask:p:*"):
        for key in redis_client.scan_iter(match=pattern):
            redis_client.delete(key)
    for key in redis_client.scan_iter(match="sipmask:s:*"):
        redis_client.hdel(key, "counted")
    redis_client.hdel("sipmask:meta", "schema")
    migrated = open_store()
    assert migrated.add_pool_number(V1, T0).open_sessions == 2  # Alice and Bob on V1
    assert redis_client.hget("sipmask:meta", "schema") == b"2"
    found = migrated.find_sessions(SessionFilter(participant=BOB), now=T0 + 2).items
    assert [s.id for s in found] == [open_one.id, closed.id]
    migrated.close_session(open_one.id, T0 + 3)
    assert migrated.get_pool_number(V1).open_sessions == 0

