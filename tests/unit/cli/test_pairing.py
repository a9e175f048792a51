"""``sipmask pairing add|list|remove`` (proxy/cli/pairing.py) on a real file, and ``cdr list``
on CDRs of a pairing made so."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.cli import main
from proxy.pairing import Cdr, NumberVault, SqliteStore

ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2 = "+15559990001", "+15559990002"

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run the CLI against a database and key file in tmp_path; return (code, stdout, stderr)."""
    monkeypatch.delenv("SIPMASK_KEY", raising=False)
    monkeypatch.delenv("SIPMASK_CONFIG", raising=False)

    def _run(*argv: str) -> tuple[int, str, str]:
        code = main(
            ["--db", str(tmp_path / "sipmask.db"), "--key-file", str(tmp_path / "sipmask.key"),
             *argv]
        )
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def add(run: Run, a: str = ALICE, va: str = V1, b: str = BOB, vb: str = V2,
        *extra: str) -> tuple[int, str, str]:
    return run("pairing", "add", "--a", a, "--a-virtual", va, "--b", b, "--b-virtual", vb, *extra)


def created_id(out: str) -> str:
    match = re.search(r"created (ps_[0-9a-f]+)", out)
    assert match, out
    return match.group(1)


def test_add_then_list_masks_numbers(run: Run, tmp_path: Path) -> None:
    code, out, err = add(run, "+1 555-123-0001", "555 999 0001", BOB, V2,
                         "--ttl", "3600", "--meta", "order=42", "city=Paris", "--meta", "k=v=w")
    assert code == 0, err
    session_id = created_id(out)
    assert (tmp_path / "sipmask.key").exists()

    code, out, _ = run("pairing", "list")
    assert code == 0
    assert session_id in out and "open" in out
    vault = NumberVault.from_key_file(tmp_path / "sipmask.key", create=False)
    assert f"+1 ***01 {vault.token(ALICE)}" in out and f"+1 ***02 {vault.token(BOB)}" in out
    assert ALICE not in out and BOB not in out
    assert V1 in out and V2 in out  # virtual numbers are not secret
    assert "order=42" in out and "city=Paris" in out and "k=v=w" in out and "ttl=3600s" in out


def test_list_reveal_shows_real_numbers(run: Run) -> None:
    add(run)
    code, out, _ = run("pairing", "list", "--reveal")
    assert code == 0 and ALICE in out and BOB in out


def test_list_status_filter_and_empty(run: Run) -> None:
    code, out, _ = run("pairing", "list")
    assert code == 0 and "no pairings" in out
    _, out, _ = add(run)
    session_id = created_id(out)
    assert run("pairing", "remove", session_id)[0] == 0
    _, out, _ = run("pairing", "list", "--status", "open")
    assert "no pairings" in out
    _, out, _ = run("pairing", "list", "--status", "closed")
    assert session_id in out and "closed" in out


def test_conflict_exits_1_without_revealing_numbers(run: Run) -> None:
    _, out, _ = add(run)
    first = created_id(out)
    code, out, err = add(run, ALICE, V1, CAROL, "+15559990003")
    assert code == 1
    assert err.startswith("error: ") and first in err and "Traceback" not in err
    assert ALICE not in err and CAROL not in err


@pytest.mark.parametrize("bad_option", ["--a", "--a-virtual", "--b", "--b-virtual"])
def test_bad_number_exits_1_naming_the_option(run: Run, bad_option: str) -> None:
    numbers = {"--a": ALICE, "--a-virtual": V1, "--b": BOB, "--b-virtual": V2}
    numbers[bad_option] = "555 98"
    argv = [item for pair in numbers.items() for item in pair]
    code, out, err = run("pairing", "add", *argv)
    assert code == 1 and out == ""
    assert err.startswith(f"error: {bad_option}:") and "55598" not in err.replace(" ", "")


def test_same_participant_twice_is_refused(run: Run) -> None:
    code, _, err = add(run, ALICE, V1, ALICE, V2)
    assert code == 1 and "two different participants" in err


def test_remove_unknown_and_twice(run: Run) -> None:
    code, _, err = run("pairing", "remove", "ps_0000000000000000")
    assert code == 1 and "no session with id ps_0000000000000000" in err
    _, out, _ = add(run)
    session_id = created_id(out)
    code, out, _ = run("pairing", "remove", session_id)
    assert code == 0 and f"closed {session_id}" in out
    code, out, _ = run("pairing", "remove", session_id)
    assert code == 0 and "already closed" in out
    # The virtual number is free again for Alice.
    assert add(run, ALICE, V1, CAROL, V2)[0] == 0


def test_expires_in_sets_an_absolute_expiry(run: Run) -> None:
    code, out, _ = add(run, ALICE, V1, BOB, V2, "--expires-in", "600", "--mode", "message")
    assert code == 0 and "expires=" in out and "message" in out


def test_usage_errors_exit_2(run: Run) -> None:
    with pytest.raises(SystemExit) as info:
        add(run, ALICE, V1, BOB, V2, "--ttl", "-5")
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        add(run, ALICE, V1, BOB, V2, "--meta", "novalue")


def test_wrong_key_file_is_a_clear_error(run: Run, tmp_path: Path) -> None:
    add(run)
    (tmp_path / "sipmask.key").write_text(bytes(64).hex())
    code, _, err = run("pairing", "list")
    assert code == 1 and "key file does not match" in err


def test_cdr_list(run: Run, tmp_path: Path) -> None:
    code, out, _ = run("cdr", "list")
    assert code == 0 and "no CDRs" in out
    _, out, _ = add(run)
    session_id = created_id(out)
    vault = NumberVault.from_key_file(tmp_path / "sipmask.key", create=False)
    store = SqliteStore(tmp_path / "sipmask.db", vault)
    store.record_cdrs([
        Cdr(vault.token("call-1"), session_id, vault.token(ALICE), vault.token(BOB),
            1_700_000_000.0, 1_700_000_005.0, 1_700_000_065.0, "answered", 200, "bye", 60.0),
        Cdr(vault.token("call-2"), None, vault.token(CAROL), vault.token(BOB),
            1_700_000_100.0, None, 1_700_000_101.0, "rejected", 404, "no pairing", 0.0),
    ])
    store.close()
    code, out, _ = run("cdr", "list")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 2
    assert "rejected 404" in lines[0] and "answered 200" in lines[1]
    assert vault.token(ALICE) in lines[1] and ALICE not in out
    _, out, _ = run("cdr", "list", "--session", session_id)
    assert len(out.strip().splitlines()) == 1 and "duration=60.0s" in out


def test_missing_key_for_an_existing_database_is_not_recreated(run: Run, tmp_path: Path) -> None:
    add(run)
    (tmp_path / "sipmask.key").unlink()
    code, _, err = run("pairing", "list")
    assert code == 1 and "key file not found" in err
    assert not (tmp_path / "sipmask.key").exists()


def test_pairing_commands_still_work(sipmask) -> None:
    code, out, _ = sipmask("pairing", "add", "--a", ALICE, "--a-virtual", V1, "--b", BOB,
                           "--b-virtual", V2)
    assert code == 0
    assert "ps_" in sipmask("session", "list")[1]
