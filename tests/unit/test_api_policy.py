"""A session's call policy through the HTTP API (real loopback socket): create, get, list and
update carry it, bad values get 422 problem+json naming the field and change nothing, the
audit log records it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .api_harness import Api, running_api
from .test_api import ALICE, BOB, V1, V2, add_pool, create, is_problem

COURIER = {"days": "mon-fri", "from": "08:00", "to": "20:00", "tz": "Asia/Singapore"}
DEFAULTS = {"calling_windows": [], "max_call_s": None, "ring_timeout_s": None,
            "direction": "both", "single_use": False}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as handle:
        add_pool(handle, V1, V2)
        yield handle


def policy_of(session: dict) -> dict:
    return {name: session[name] for name in DEFAULTS}


def test_a_session_shows_the_default_policy(api: Api) -> None:
    assert policy_of(create(api)) == DEFAULTS


def test_create_get_and_list_carry_the_policy(api: Api) -> None:
    policy = {"calling_windows": [COURIER, {"days": "sat-sun", "from": "10:00", "to": "14:00",
                                            "tz": "Europe/Paris"}],
              "max_call_s": 600, "ring_timeout_s": 20, "direction": "a_to_b", "single_use": True}
    session = create(api, **policy)
    assert policy_of(session) == policy
    assert policy_of(api.get(f"/v1/sessions/{session['id']}").json) == policy
    listed = api.get("/v1/sessions", token="viewer").json["items"]
    assert [policy_of(s) for s in listed] == [policy]


def test_days_are_shown_in_their_short_form(api: Api) -> None:
    session = create(api, calling_windows=[{**COURIER, "days": "mon,tue,wed,thu,fri"}])
    assert session["calling_windows"] == [COURIER]


def test_update_changes_only_the_policy_fields_given(api: Api) -> None:
    session = create(api, direction="a_to_b", max_call_s=300, ttl_s=3600)
    path = f"/v1/sessions/{session['id']}"
    reply = api.request("PATCH", path, {"calling_windows": [COURIER], "max_call_s": None})
    assert reply.status == 200, reply.body
    assert policy_of(reply.json) == {**DEFAULTS, "calling_windows": [COURIER],
                                     "direction": "a_to_b"}
    assert reply.json["ttl_s"] == 3600
    reply = api.request("PATCH", path, {"calling_windows": [], "single_use": True})
    assert policy_of(reply.json) == {**DEFAULTS, "direction": "a_to_b", "single_use": True}
    updates = [e for e in api.get("/v1/audit", token="admin").json["items"]
               if e["action"] == "session.update"]
    assert updates[0]["details"]["policy"]["single_use"] is True


@pytest.mark.parametrize(("extra", "field"), [
    ({"calling_windows": [{**COURIER, "tz": "Mars/Olympus"}]}, "calling_windows[0].tz"),
    ({"calling_windows": [{**COURIER, "tz": "Europe"}]}, "calling_windows[0].tz"),
    ({"calling_windows": [COURIER, {**COURIER, "to": "07:00"}]}, "calling_windows[1].to"),
    ({"calling_windows": [{**COURIER, "days": "weekdays"}]}, "calling_windows[0].days"),
    ({"calling_windows": [{**COURIER, "at": "x"}]}, "calling_windows[0].at"),
    ({"max_call_s": -1}, "max_call_s"),
    ({"ring_timeout_s": "20"}, "ring_timeout_s"),
    ({"direction": "one_way"}, "direction"),
    ({"single_use": 1}, "single_use"),
])
def test_bad_policy_values_are_422_naming_the_field(api: Api, extra: dict, field: str) -> None:
    reply = api.post("/v1/sessions", {"a": {"number": ALICE}, "b": {"number": BOB}, **extra})
    is_problem(reply, 422, field)
    assert api.get("/v1/sessions").json["items"] == []  # nothing created
    session = create(api)
    is_problem(api.request("PATCH", f"/v1/sessions/{session['id']}", extra), 422, field)
    assert policy_of(api.get(f"/v1/sessions/{session['id']}").json) == DEFAULTS


def test_the_audit_of_a_create_names_the_policy_and_no_number(api: Api) -> None:
    create(api, direction="b_to_a", calling_windows=[COURIER])
    entry = next(e for e in api.get("/v1/audit", token="admin").json["items"]
                 if e["action"] == "session.create")
    assert entry["details"]["policy"]["direction"] == "b_to_a"
    assert ALICE not in str(entry) and BOB not in str(entry)
