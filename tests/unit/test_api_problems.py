"""Problem details never echo a submitted value: not-found and conflict answers of the stores
(whose messages name the value for the CLI), unknown fields, query parameters and cursors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.api.problems import from_exception
from proxy.pairing import NumberVault, SqliteStore
from proxy.pairing.model import ConflictError, NotFound

from .api_harness import Api, running_api
from .test_api import ALICE, BOB, V1, add_pool, create, is_problem

# Distinctive values that must never come back in a body.
SESSION_PROBE = "s_0123456789abcdef0123"
V_PROBE = "+15559998877"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as handle:
        yield handle


def never_echoed(reply, *values: str) -> None:
    text = reply.body.decode()
    for value in values:
        assert value not in text, text
        assert value.lstrip("+") not in text, text


def test_unknown_session_id_is_404_naming_the_field_not_the_id(api: Api) -> None:
    for method, path in (("GET", f"/v1/sessions/{SESSION_PROBE}"),
                         ("POST", f"/v1/sessions/{SESSION_PROBE}/close"),
                         ("DELETE", f"/v1/sessions/{SESSION_PROBE}"),
                         ("GET", f"/v1/sessions/{SESSION_PROBE}/interactions")):
        reply = api.request(method, path, token="admin")
        is_problem(reply, 404, "session_id")
        never_echoed(reply, SESSION_PROBE)
    reply = api.request("PATCH", f"/v1/sessions/{SESSION_PROBE}", {"ttl_s": 60}, token="admin")
    is_problem(reply, 404, "session_id")
    never_echoed(reply, SESSION_PROBE)


def test_pool_not_found_and_conflicts_name_the_field_not_the_number(api: Api) -> None:
    for method, path in (("GET", f"/v1/pool/numbers/{V_PROBE}"),
                         ("POST", f"/v1/pool/numbers/{V_PROBE}/drain"),
                         ("POST", f"/v1/pool/numbers/{V_PROBE}/activate"),
                         ("DELETE", f"/v1/pool/numbers/{V_PROBE}")):
        reply = api.request(method, path.replace("+", "%2B"), token="admin")
        is_problem(reply, 404, "number")
        never_echoed(reply, V_PROBE)
    add_pool(api, V_PROBE)
    reply = api.post("/v1/pool/numbers", {"number": V_PROBE})
    is_problem(reply, 409, "number")
    never_echoed(reply, V_PROBE)
    assert api.post(f"/v1/pool/numbers/{V_PROBE.replace('+', '%2B')}/drain").status == 200
    reply = api.post("/v1/sessions", {"a": {"number": ALICE, "virtual": V_PROBE},
                                      "b": {"number": BOB}}, token="operator")
    is_problem(reply, 409, "virtual")
    never_echoed(reply, V_PROBE, ALICE, BOB)


def test_closing_a_closed_session_is_409_without_its_id(api: Api) -> None:
    add_pool(api, V1)
    session = create(api)
    assert api.post(f"/v1/sessions/{session['id']}/close", token="operator").status == 200
    reply = api.request("PATCH", f"/v1/sessions/{session['id']}", {"ttl_s": 60},
                        token="operator")
    is_problem(reply, 409, "session_id")
    never_echoed(reply, session["id"])


def test_unknown_names_and_cursors_are_not_echoed(api: Api) -> None:
    reply = api.get(f"/v1/sessions?{ALICE.replace('+', '%2B')}=1")
    is_problem(reply, 422, "query")
    never_echoed(reply, ALICE)
    reply = api.get(f"/v1/pool/numbers?x{ALICE[1:]}=1")
    is_problem(reply, 422, "query")
    never_echoed(reply, ALICE)
    reply = api.get(f"/v1/audit?{ALICE[1:]}=1")
    is_problem(reply, 422, "query")
    never_echoed(reply, ALICE)
    reply = api.post("/v1/sessions", {"a": {"number": ALICE}, "b": {"number": BOB},
                                      ALICE: 1}, token="operator")
    is_problem(reply, 422, "body")
    never_echoed(reply, ALICE, BOB)
    reply = api.post("/v1/sessions", {"a": {"number": ALICE, ALICE[1:]: 1},
                                      "b": {"number": BOB}}, token="operator")
    is_problem(reply, 422, "a")
    never_echoed(reply, ALICE)
    reply = api.post("/v1/sessions", {"a": {"number": ALICE}, "b": {"number": BOB},
                                      "metadata": {ALICE[1:]: [1]}}, token="operator")
    is_problem(reply, 422, "metadata")
    never_echoed(reply, ALICE)
    reply = api.get(f"/v1/sessions?cursor=x{ALICE[1:]}")
    is_problem(reply, 422, "cursor")
    never_echoed(reply, ALICE)


def test_short_identifiers_are_still_named_back() -> None:
    from proxy.api.problems import field_name
    assert field_name("colour", "body") == "colour"
    assert field_name("metadata.k", "metadata") == "metadata.k"
    assert field_name("a.extra", "a") == "a.extra"
    for risky in ("15551230001", "x5551230", "+1555", "a" * 41, "k 1", "name\n"):
        assert field_name(risky, "body") == "body"


def test_every_store_message_maps_to_a_fixed_detail(tmp_path: Path) -> None:
    """The table in problems.py follows the stores' wording: a store message that no longer
    matches would fall back to a vaguer detail without a field, so every one is tried here."""
    store = SqliteStore(tmp_path / "s.db", NumberVault.from_secret(bytes(64)))
    try:
        raised: list[Exception] = []
        for call in (lambda: store.get_session(SESSION_PROBE),
                     lambda: store.get_pool_number(V_PROBE),
                     lambda: store.revoke_token("tok_nothere", 1.0)):
            with pytest.raises(NotFound) as caught:
                call()
            raised.append(caught.value)
        store.add_pool_number(V_PROBE, 1.0)
        store.create_token("ops", "admin", "h" * 64, 1.0)
        for call in (lambda: store.add_pool_number(V_PROBE, 2.0),
                     lambda: store.create_token("ops", "admin", "g" * 64, 2.0)):
            with pytest.raises(ConflictError) as caught:
                call()
            raised.append(caught.value)
    finally:
        store.close()
    for exc in raised:
        problem = from_exception(exc)
        assert problem is not None and problem.field is not None, exc
        assert V_PROBE not in problem.detail and SESSION_PROBE not in problem.detail
