"""The dialog-record contract (``DialogStore``: calls that outlive a worker), on a real SQLite
file and a real redis-server, through the protocol only."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.pairing import NumberVault, SqliteStore
from proxy.pairing.stores import DialogStore
from proxy.pairing.stores.redis import RedisStore

SECRET = bytes(range(64))
T0 = 1_700_000_000.0

Factory = Callable[[], Any]


@pytest.fixture(params=["sqlite", "redis"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Factory]:
    opened: list[Any] = []

    def make() -> Any:
        vault = NumberVault.from_secret(SECRET)
        if request.param == "sqlite":
            store: Any = SqliteStore(tmp_path / "sipmask.db", vault)
        else:
            request.getfixturevalue("redis_client")  # flushed for this test
            store = RedisStore.from_url(request.getfixturevalue("redis_url"), vault)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


def test_implements_the_protocol(open_store: Factory) -> None:
    assert isinstance(open_store(), DialogStore)


def test_records_are_written_read_replaced_and_deleted(open_store: Factory) -> None:
    store, other = open_store(), open_store()  # two processes on one table
    store.put_dialogs("w1", {"c1": b"one", "c2": b"\x00two\xff"}, [])
    assert other.dialogs_of("w1") == {"c1": b"one", "c2": b"\x00two\xff"}
    store.put_dialogs("w1", {"c1": b"one-v2"}, ["c2"])
    assert other.dialogs_of("w1") == {"c1": b"one-v2"}
    assert other.dialogs_of("w2") == {}
    store.put_dialogs("w1", {}, ["c1", "never-written"])
    assert other.dialogs_of("w1") == {}


def test_leases_and_claims(open_store: Factory) -> None:
    store, sibling = open_store(), open_store()
    store.heartbeat("w1", T0 + 10)
    store.put_dialogs("w1", {"c1": b"r1", "c2": b"r2"}, [])
    assert sibling.worker_leases()["w1"] == pytest.approx(T0 + 10)
    # the lease still runs: nothing moves
    assert sibling.claim_dialogs("w1", "w2", T0 + 5) == {}
    assert store.dialogs_of("w1") == {"c1": b"r1", "c2": b"r2"}
    # it ran out: everything moves to the claimant, once
    assert sibling.claim_dialogs("w1", "w2", T0 + 11) == {"c1": b"r1", "c2": b"r2"}
    assert sibling.claim_dialogs("w1", "w3", T0 + 12) == {}
    assert store.dialogs_of("w1") == {}
    assert sibling.dialogs_of("w2") == {"c1": b"r1", "c2": b"r2"}
    assert "w1" not in sibling.worker_leases()
    # the new owner deletes a call it ended
    sibling.put_dialogs("w2", {}, ["c1"])
    assert sibling.dialogs_of("w2") == {"c2": b"r2"}


def test_a_worker_without_lease_is_claimable_and_release_ends_a_lease(open_store: Factory) -> None:
    store = open_store()
    store.put_dialogs("never-leased", {"c": b"r"}, [])
    assert store.worker_leases().get("never-leased") == 0.0
    store.heartbeat("w1", T0 + 100)
    store.put_dialogs("w1", {"d": b"s"}, [])
    store.release_worker("w1")
    assert store.worker_leases()["w1"] == 0.0
    assert store.claim_dialogs("w1", "w2", T0) == {"d": b"s"}
    assert store.claim_dialogs("never-leased", "w2", T0) == {"c": b"r"}


def test_two_siblings_claiming_at_once_get_each_record_once(open_store: Factory) -> None:
    seed = open_store()
    seed.put_dialogs("dead", {f"c{i}": b"r" for i in range(200)}, [])
    a, b = open_store(), open_store()
    got: dict[str, dict[str, bytes]] = {}
    barrier = threading.Barrier(2)

    def claim(store: Any, name: str) -> None:
        barrier.wait()
        got[name] = store.claim_dialogs("dead", name, T0)

    threads = [threading.Thread(target=claim, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got["a"]) + len(got["b"]) == 200
    assert not set(got["a"]) & set(got["b"])
