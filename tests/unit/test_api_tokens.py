"""API tokens that expire: refused with 401 ``token-expired`` from their expiry on (every
request), audited and logged, on SQLite and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from .api_harness import Api, running_api
from .test_api import is_problem


@pytest.fixture(params=["sqlite", "redis"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    redis_url = None
    if request.param == "redis":
        request.getfixturevalue("redis_client")  # flushed for this test
        redis_url = request.getfixturevalue("redis_url")
    with running_api(tmp_path, redis_url=redis_url) as handle:
        yield handle


def test_a_token_works_until_its_expiry_then_gets_401_token_expired(api: Api) -> None:
    token, secret = api.admin.create_token("test", "ci", "read-only",
                                           expires_at=api.clock.now + 3600)
    assert token.expires_at == api.clock.now + 3600
    assert api.get("/v1/sessions", token=secret).status == 200
    api.clock.now += 3599
    assert api.get("/v1/pool/numbers", token=secret).status == 200
    api.clock.now += 1
    with capture_logs() as logs:
        for path in ("/v1/sessions", "/v1/pool/numbers", "/v1/sessions/ps_x"):
            reply = api.get(path, token=secret)
            body = is_problem(reply, 401)
            assert body["type"] == "urn:sipmask:problem:token-expired"
            assert "expired at 2023-11-14T23:13:20Z" in body["detail"]
            assert 'error="invalid_token"' in reply.headers["www-authenticate"]
    assert [e["event"] for e in logs if e["event"] == "api.token_expired"] == [
        "api.token_expired"]  # one line per token per interval, not one per request
    audit = api.get("/v1/audit?actor=" + f"{token.id}/ci", token="admin").json["items"]
    assert [(e["action"], e["target"]) for e in audit] == [
        ("access.expired", "/v1/sessions/{session_id}"),
        ("access.expired", "/v1/pool/numbers"),
        ("access.expired", "/v1/sessions"),
    ]
    assert audit[0]["details"] == {"method": "GET", "expired_at": token.expires_at}
    # other tokens are unaffected
    assert api.get("/v1/sessions", token="viewer").status == 200


def test_an_unknown_token_is_still_the_plain_401(api: Api) -> None:
    body = is_problem(api.get("/v1/sessions", token="smk_unknown"), 401)
    assert body["type"] == "urn:sipmask:problem:unauthorized"


def test_creating_a_token_audits_its_expiry(api: Api) -> None:
    token, _ = api.admin.create_token("test", "ci", "operator", expires_at=api.clock.now + 60)
    entries = api.store.list_audit(target=token.id)
    assert entries[0].action == "token.create"
    assert entries[0].details == {"name": "ci", "role": "operator",
                                  "expires_at": api.clock.now + 60}
