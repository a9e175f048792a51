"""proxy.pairing.cdr_export: the formats, byte for byte (the store side is in the contract
suite, the API and CLI in their own tests)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.pairing import Cdr
from proxy.pairing.cdr_export import CDR_FIELDS, export_chunks, export_header, export_page


def cdr(ended_at: float, cause: str = "bye", answered_at: float | None = None) -> Cdr:
    return Cdr("n_000000000001", None, "n_aaaaaaaaaaaa", "n_bbbbbbbbbbbb", ended_at - 1,
               answered_at, ended_at, "answered", 200, cause, 1.25)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@given(st.floats(min_value=1.0, max_value=4e9, allow_nan=False))
def test_times_are_what_isoformat_writes(ts: float) -> None:
    row = json.loads(export_page([cdr(ts, answered_at=ts)], "jsonl"))
    assert row["ended_at"] == row["answered_at"] == iso(ts)
    assert row["started_at"] == iso(ts - 1)


def test_csv_is_rfc_4180_with_a_header() -> None:
    cause = 'said "no", then\r\nhung up, twice'
    text = "".join(export_chunks([[cdr(1_700_000_000.5, cause)], [cdr(1_700_000_001.0)]], "csv"))
    assert text.startswith(",".join(CDR_FIELDS) + "\r\n") and text.endswith("\r\n")
    assert '"said ""no"", then\r\nhung up, twice"' in text
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(CDR_FIELDS) and len(rows) == 3
    assert rows[1][CDR_FIELDS.index("cause")] == cause
    assert rows[1][CDR_FIELDS.index("ended_at")] == "2023-11-14T22:13:20.500Z"
    assert rows[1][CDR_FIELDS.index("session_id")] == rows[1][CDR_FIELDS.index("answered_at")] == ""


def test_jsonl_is_one_object_a_line_and_has_no_header() -> None:
    assert export_header("jsonl") == ""
    text = export_page([cdr(1_700_000_000.0), cdr(1_700_000_002.0, "a\nb")], "jsonl")
    lines = text.split("\n")
    assert len(lines) == 3 and lines[-1] == ""
    first = json.loads(lines[0])
    assert list(first) == list(CDR_FIELDS) and first["answered_at"] is None
    assert json.loads(lines[1])["cause"] == "a\nb"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="csv, jsonl"):
        export_header("xml")
