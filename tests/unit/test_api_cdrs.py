"""``GET /v1/cdrs/export`` over a real loopback socket, on a SQLite file and on a real
redis-server: streamed CSV and JSON lines, the issue's 10,000-CDR export, parameters, roles."""

from __future__ import annotations

import csv
import http.client
import io
import json
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from urllib.parse import urlencode

import pytest

from proxy.pairing import NumberVault
from proxy.pairing.model import Cdr

from .api_harness import SECRET, Api, running_api
from .test_api import is_problem

ALICE, BOB = "+15551230001", "+15551230002"
T0 = 1_700_000_000.0
FIELDS = [f.name for f in fields(Cdr)]


@pytest.fixture(params=["sqlite", "redis"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    redis_url = None
    if request.param == "redis":
        request.getfixturevalue("redis_client")  # flushed for this test
        redis_url = request.getfixturevalue("redis_url")
    with running_api(tmp_path, redis_url=redis_url) as handle:
        yield handle


def cdrs(n: int, *, session_id: str | None = None, start: float = T0) -> list[Cdr]:
    vault = NumberVault.from_secret(SECRET)
    caller, callee = vault.token(ALICE), vault.token(BOB)
    return [Cdr(vault.token(f"call-{i}@h"), session_id, caller, callee, start + i - 30,
                None if i % 3 else start + i - 20, start + i, "answered" if i % 3 else "busy",
                200 if i % 3 else 486, 'caller said "bye", then hung up', 20.0 * (i % 3 > 0))
            for i in range(n)]


def export(api: Api, token: str = "viewer", **params: str):
    return api.get("/v1/cdrs/export?" + urlencode(params), token=token)


def test_export_of_10000_cdrs_as_csv_is_streamed_in_ended_at_order(api: Api) -> None:
    api.store.record_cdrs(cdrs(10_000))
    reply = export(api, **{"from": "2023-11-14T22:13:20Z", "to": str(int(T0 + 10_000))})
    assert reply.status == 200, reply.body
    assert reply.content_type == "text/csv"
    assert reply.headers.get("transfer-encoding") == "chunked"  # streamed, not buffered
    assert "content-length" not in reply.headers
    text = reply.body.decode()
    assert "\r\n" in text  # RFC 4180 line ends
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == FIELDS and len(rows) == 10_001
    ended = [row[FIELDS.index("ended_at")] for row in rows[1:]]
    assert ended == sorted(ended) and ended[0] == "2023-11-14T22:13:20.000Z"
    assert rows[1][FIELDS.index("cause")] == 'caller said "bye", then hung up'  # quoting
    assert rows[2][FIELDS.index("answered_at")] == ""  # absent time
    assert len({row[0] for row in rows[1:]}) == 10_000
    for number in (ALICE, BOB, ALICE[1:], BOB[1:]):
        assert number not in text  # tokens, never numbers


def test_export_as_json_lines_one_object_a_line(api: Api) -> None:
    api.store.record_cdrs(cdrs(2500, session_id="ps_0123456789abcdef"))
    api.store.record_cdrs(cdrs(40, start=T0 + 5000))
    reply = export(api, **{"from": str(T0), "to": str(T0 + 9999), "format": "jsonl"})
    assert reply.status == 200 and reply.content_type == "application/jsonl"
    lines = reply.body.decode().splitlines()
    assert len(lines) == 2540
    items = [json.loads(line) for line in lines]
    assert list(items[0]) == FIELDS
    assert items[0]["ended_at"] == "2023-11-14T22:13:20.000Z" and items[1]["answered_at"] is None
    assert items[-1]["session_id"] is None and items[0]["session_id"] == "ps_0123456789abcdef"
    only = export(api, **{"from": str(T0), "to": str(T0 + 9999), "format": "jsonl",
                          "session": "ps_0123456789abcdef"})
    assert len(only.body.decode().splitlines()) == 2500
    assert ALICE not in reply.body.decode() and ALICE[1:] not in reply.body.decode()


def test_an_empty_range_is_a_header_only_csv_or_an_empty_body(api: Api) -> None:
    api.store.record_cdrs(cdrs(5))
    reply = export(api, **{"from": str(T0 + 100), "to": str(T0 + 200)})
    assert reply.status == 200 and reply.body.decode() == ",".join(FIELDS) + "\r\n"
    reply = export(api, **{"from": str(T0 + 100), "to": str(T0 + 200), "format": "jsonl"})
    assert reply.status == 200 and reply.body == b""


@pytest.mark.parametrize(("params", "field"), [
    ({"to": "1700000100"}, "from"),
    ({"from": "1700000000"}, "to"),
    ({"from": "+15551230001", "to": "1700000100"}, "from"),
    ({"from": "1700000000", "to": "2023-13-45T00:00:00Z"}, "to"),
    ({"from": "1700000000", "to": "2023-11-14T22:13:20"}, "to"),  # no offset
    ({"from": "1700000100", "to": "1700000000"}, "to"),
    ({"from": "1700000100", "to": "1700000100"}, "to"),
    ({"from": "1700000000", "to": "1700000100", "format": "xlsx"}, "format"),
    ({"from": "1700000000", "to": "1700000100", "session": "+15551230001"}, "session"),
    ({"from": "1700000000", "to": "1700000100", "number": "+15551230001"}, "number"),
])
def test_bad_parameters_are_422_naming_the_parameter_never_echoing_it(
        api: Api, params: dict[str, str], field: str) -> None:
    reply = export(api, **params)
    body = is_problem(reply, 422, field)
    for value in params.values():
        assert value not in body["detail"]
    assert "15551230001" not in reply.body.decode()


def test_export_needs_a_token_and_read_only_is_enough(api: Api) -> None:
    api.store.record_cdrs(cdrs(3))
    window = {"from": str(T0), "to": str(T0 + 10)}
    is_problem(export(api, token=None, **window), 401)
    is_problem(export(api, token="not-a-token", **window), 401)
    for token in ("viewer", "operator", "admin"):
        reply = export(api, token=token, **window)
        assert reply.status == 200 and len(reply.body.decode().splitlines()) == 4


def test_a_store_failure_mid_export_truncates_the_body(api: Api,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    api.store.record_cdrs(cdrs(2500))
    real = api.store.export_cdrs
    calls = []

    def failing(*args, **kwargs):
        calls.append(kwargs.get("cursor"))
        if len(calls) == 2:
            raise OSError("store went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(api.store, "export_cdrs", failing)
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.request("GET", "/v1/cdrs/export?" + urlencode({"from": str(T0), "to": str(T0 + 1e4)}),
                 headers={"Authorization": f"Bearer {api.tokens['viewer']}"})
    response = conn.getresponse()
    assert response.status == 200  # the first page went out before the failure
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert caught.value.partial.startswith(b"call_id_token,")
    assert len(caught.value.partial.splitlines()) == 1001  # the header and the first page
    conn.close()
