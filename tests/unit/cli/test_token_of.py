"""``sipmask token-of NUMBER``: the token a rejected call's log line carries for its caller
(and, with ``--call-id``, for its Call-ID), as the JSON log renders it after redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from proxy.cli import main
from proxy.observability import Redactor, configure_logging
from proxy.pairing import NumberVault
from proxy.sip.message import Response

from ..b2bua_harness import CALLER, A, Harness, invite, only


@pytest.fixture
def reset_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def token_of(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["--db", str(tmp_path / "db.sqlite"), "--key-file", str(tmp_path / "key"),
                 "token-of", *args])
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).strip()


def test_a_rejected_calls_log_line_holds_the_token_token_of_prints(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], reset_logging: None) -> None:
    vault = NumberVault.from_key_file(tmp_path / "key")  # the harness's key file
    out = io.StringIO()
    configure_logging("info", "json", Redactor(vault.token_key), out)
    h = Harness(tmp_path)
    unknown = "+15550000000"
    replies = h.feed(invite(frm=unknown, cid="why-me-1@pbx"), A)
    assert [m.status for m, _ in only(replies, Response) if m.status >= 200] == [404]
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    (rejected,) = [e for e in lines if e["event"] == "call.rejected"]
    assert rejected["reason"] == "no_pairing"

    code, caller = token_of(tmp_path, capsys, "+1 (555) 000-0000")
    assert code == 0 and caller.startswith("#n_")
    assert rejected["caller"] == caller
    assert rejected["dialed"] == token_of(tmp_path, capsys, "+15557770001")[1]
    assert rejected["call_id"] == token_of(tmp_path, capsys, "--call-id", "why-me-1@pbx")[1]
    assert caller == "#" + vault.token(unknown)  # the CDR form, with the log's '#'
    assert unknown not in out.getvalue() and unknown[2:] not in out.getvalue()
    assert token_of(tmp_path, capsys, CALLER)[1] != caller


def test_token_of_refuses_a_non_number_without_echoing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    NumberVault.from_key_file(tmp_path / "key")  # creates it
    code, text = token_of(tmp_path, capsys, "55x5-12")
    assert code == 1 and "NUMBER" in text and "55x5" not in text


def test_token_of_without_a_key_says_so_and_creates_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = token_of(tmp_path, capsys, "+15551230001")
    assert code == 1 and "key file not found" in text
    assert not (tmp_path / "key").exists()
