"""``sipmask audit list`` on a real store file."""

from __future__ import annotations

ALICE, BOB = "+15551230001", "+15551230002"
V1 = "+15559990001"


def test_audit_lists_cli_changes_without_numbers(sipmask) -> None:
    sipmask("pool", "add", V1)
    sipmask("session", "create", "--a", ALICE, "--b", BOB)
    code, out, _ = sipmask("audit", "list")
    assert code == 0
    assert "session.create" in out and "pool.add" in out and "cli:" in out
    for number in (ALICE, BOB):
        assert number not in out and number[2:] not in out
