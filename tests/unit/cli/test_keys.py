"""``sipmask keys rotate`` and ``sipmask purge`` (proxy/cli/keys.py), and the pairing commands,
on both stores, through the real command line entry point and a config file."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy import cli
from proxy.pairing import NumberVault, Participant, StoreError
from proxy.pairing.stores import PairingStore, open_store
from proxy.pairing.stores.redis import RedisStore

ALICE, BOB, CAROL, DAVE = "+15551230001", "+15551230002", "+15551230003", "+15551230004"
V1, V2, V3 = "+15559990001", "+15559990002", "+15559990003"
DAY = 86_400.0

Run = Callable[..., tuple[int, str, str]]


class Setup:
    def __init__(self, tmp_path: Path, backend: str, url: str | None) -> None:
        self.tmp_path = tmp_path
        self.backend = backend
        self.url = url
        self.key_file = tmp_path / "sipmask.key"
        self.db = tmp_path / "sipmask.db"
        self.config = tmp_path / "sipmask.toml"
        store = f'backend = "{backend}"\n' + (f'redis_url = "{url}"\n' if url else "")
        self.config.write_text(
            f'[store]\npath = "{self.db}"\nkey_file = "{self.key_file}"\nretention_days = 30\n'
            + store
        )
        NumberVault.from_key_file(self.key_file)  # as the first `sipmask run` would

    def store(self, key_file: Path | None = None) -> PairingStore:
        vault = NumberVault.from_key_file(key_file or self.key_file, create=False)
        return open_store(self.backend, vault, path=self.db, redis_url=self.url)


@pytest.fixture(params=["sqlite", "redis"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Setup:
    url = None
    if request.param == "redis":
        request.getfixturevalue("redis_client")
        url = request.getfixturevalue("redis_url")
    return Setup(tmp_path, request.param, url)


@pytest.fixture
def run(setup: Setup, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Run:
    monkeypatch.delenv("SIPMASK_KEY", raising=False)

    def _run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["-c", str(setup.config), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def seed(store: PairingStore) -> list[str]:
    ids = [
        store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=time.time()).id,
        store.create_session(Participant(CAROL, V1), Participant(DAVE, V3), now=time.time()).id,
    ]
    store.close_session(ids[1], time.time())
    return ids


def assert_private(*texts: str) -> None:
    for text in texts:
        for number in (ALICE, BOB, CAROL, DAVE):
            assert number[2:] not in text, text


def test_pairing_commands_use_the_configured_store(setup: Setup, run: Run) -> None:
    code, out, err = run("pairing", "add", "--a", ALICE, "--a-virtual", V1, "--b", BOB,
                         "--b-virtual", V2)
    assert code == 0, err
    code, out, err = run("pairing", "list", "--status", "open")
    assert code == 0 and out.count("open") == 1
    assert_private(out, err)
    store = setup.store()
    assert [s.a.number for s in store.list_sessions()] == [ALICE]
    store.close()


def test_keys_rotate_re_encrypts_and_installs_the_new_key(setup: Setup, run: Run) -> None:
    store = setup.store()
    ids = seed(store)
    store.close()
    old_key = setup.key_file.read_bytes()
    new_key_file = setup.tmp_path / "new.key"

    code, out, err = run("keys", "rotate", "--new-key-file", str(new_key_file))
    assert code == 0, err
    assert "re-encrypted 2 sessions" in out and "restart every sipmask worker" in out
    assert_private(out, err)
    assert new_key_file.stat().st_mode & 0o777 == 0o600
    assert setup.key_file.read_bytes() == new_key_file.read_bytes() != old_key
    assert (setup.tmp_path / "sipmask.key.old").read_bytes() == old_key
    assert setup.key_file.stat().st_mode & 0o777 == 0o600

    with pytest.raises(StoreError):
        setup.store(setup.tmp_path / "sipmask.key.old")
    code, out, _ = run("pairing", "list", "--reveal")
    assert code == 0 and ALICE in out and DAVE in out
    rotated = setup.store()
    assert [s.id for s in rotated.list_sessions()] == ids
    rotated.close()

    code, _, err = run("keys", "rotate", "--new-key-file", str(new_key_file))
    assert code == 1 and "already in use" in err


def test_rotation_interrupted_before_the_key_was_installed(setup: Setup, run: Run) -> None:
    store = setup.store()
    seed(store)
    new_key_file = setup.tmp_path / "new.key"
    store.rotate_key(NumberVault.from_key_file(new_key_file))  # then the process died
    store.close()
    code, err = run("pairing", "list")[0::2]
    assert code == 1 and "does not match" in err

    code, out, err = run("keys", "rotate", "--new-key-file", str(new_key_file))
    assert code == 0, err
    assert "already under the new key" in out
    assert run("pairing", "list")[0] == 0


def test_redis_rotation_interrupted_half_way(setup: Setup, run: Run,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    if setup.backend != "redis":
        pytest.skip("SQLite rotates in one transaction (see the contract suite)")
    store = setup.store()
    ids = seed(store)
    store.close()
    real = RedisStore._rotate_session
    monkeypatch.setattr(RedisStore, "_rotate_session",
                        lambda self, *a: (_ for _ in ()).throw(KeyboardInterrupt))
    new_key_file = setup.tmp_path / "new.key"
    with pytest.raises(KeyboardInterrupt):
        run("keys", "rotate", "--new-key-file", str(new_key_file))
    monkeypatch.setattr(RedisStore, "_rotate_session", real)

    code, _, err = run("pairing", "list")
    assert code == 1 and "rotation" in err and "unfinished" in err
    code, out, err = run("keys", "rotate", "--new-key-file", str(new_key_file))
    assert code == 0, err
    rotated = setup.store()
    assert [s.id for s in rotated.list_sessions()] == ids
    rotated.close()


def test_keys_rotate_no_install_and_env_key(setup: Setup, run: Run,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    old_key = setup.key_file.read_bytes()
    code, out, err = run("keys", "rotate", "--new-key-file", str(setup.tmp_path / "n.key"),
                         "--no-install")
    assert code == 0, err
    assert "set store.key_file to" in out and setup.key_file.read_bytes() == old_key

    monkeypatch.setenv("SIPMASK_KEY", (setup.tmp_path / "n.key").read_text().strip())
    code, out, err = run("keys", "rotate", "--new-key-file", str(setup.tmp_path / "m.key"))
    assert code == 0, err
    assert "$SIPMASK_KEY" in out and setup.key_file.read_bytes() == old_key


def test_purge(setup: Setup, run: Run) -> None:
    store = setup.store()
    now = time.time()
    old = store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=now - 90 * DAY)
    store.close_session(old.id, now - 60 * DAY)
    recent = store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=now - 9 * DAY)
    store.close_session(recent.id, now - 8 * DAY)
    live = store.create_session(Participant(ALICE, V1), Participant(BOB, V2), now=now - 99 * DAY)

    code, out, err = run("purge")
    assert code == 0, err
    assert "purged 1 sessions and 0 CDRs" in out and "30 days" in out
    code, out, _ = run("purge", "--older-than-days", "7")
    assert code == 0 and "purged 1 sessions" in out
    assert [s.id for s in store.list_sessions()] == [live.id]
    store.close()
    code, _, err = run("purge", "--older-than-days", "0")
    assert code == 1 and "retention" in err


def test_unreachable_redis_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIPMASK_KEY", raising=False)
    NumberVault.from_key_file(tmp_path / "k")
    config = tmp_path / "c.toml"
    config.write_text(f'[store]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:1/0"\n'
                      f'key_file = "{tmp_path / "k"}"\n')
    for argv in (["pairing", "list"], ["purge"],
                 ["keys", "rotate", "--new-key-file", str(tmp_path / "n")]):
        code = cli.main(["-c", str(config), *argv])
        _, err = capsys.readouterr()
        assert code == 1 and err.startswith("error: ") and "Traceback" not in err, err
        assert "127.0.0.1:1" in err
