"""HTTP API over a real loopback socket: auth and roles, problem+json, sessions, pool,
idempotency, pagination, exhaustion, privacy, metrics, OpenAPI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.api import openapi_document, route_table
from proxy.pairing.model import Cdr

from .api_harness import Api, running_api

ROOT = Path(__file__).resolve().parents[2]
ALICE, BOB, CAROL = "+15551230001", "+15551230002", "+15551230003"
V1, V2 = "+15559990001", "+15559990002"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with running_api(tmp_path) as handle:
        yield handle


def is_problem(reply, status: int, field: str | None = None) -> dict:
    assert reply.status == status, reply.body
    assert reply.content_type == "application/problem+json"
    body = reply.json
    assert body["status"] == status and body["type"].startswith("urn:sipmask:problem:")
    assert body["title"] and body["detail"]
    if field is not None:
        assert body.get("field") == field, body
    return body


def create(api: Api, a: str = ALICE, b: str = BOB, token: str = "operator", **extra) -> dict:
    reply = api.post("/v1/sessions", {"a": {"number": a}, "b": {"number": b}, **extra},
                     token=token)
    assert reply.status == 201, reply.body
    return reply.json


def add_pool(api: Api, *numbers: str) -> None:
    for n in numbers:
        assert api.post("/v1/pool/numbers", {"number": n}).status == 201


# -- auth ---------------------------------------------------------------------------------------

def test_missing_or_unknown_token_is_401_problem(api: Api) -> None:
    is_problem(api.get("/v1/sessions", token=None), 401)
    reply = api.get("/v1/sessions", token="smk_not-a-real-token")
    is_problem(reply, 401)
    assert reply.headers["www-authenticate"].startswith("Bearer")


def test_roles(api: Api) -> None:
    add_pool(api, V1, V2)
    is_problem(api.post("/v1/pool/numbers", {"number": "+15559990003"}, token="operator"), 403)
    is_problem(api.post("/v1/sessions", {"a": {"number": ALICE}, "b": {"number": BOB}},
                        token="viewer"), 403)
    session = create(api)  # operator may create sessions
    assert api.get(f"/v1/sessions/{session['id']}", token="viewer").status == 200
    assert api.get("/v1/pool/numbers", token="viewer").status == 200
    is_problem(api.get("/v1/audit", token="operator"), 403)
    assert api.get("/v1/audit", token="admin").status == 200


def test_revoked_token_stops_working_at_once(api: Api) -> None:
    assert api.get("/v1/sessions", token="viewer").status == 200
    api.admin.revoke_token("test", "viewer")
    is_problem(api.get("/v1/sessions", token="viewer"), 401)


def test_public_endpoints(api: Api) -> None:
    assert api.get("/healthz", token=None).json == {"status": "ok"}
    ready = api.get("/readyz", token=None)
    assert ready.status == 200 and ready.json["checks"] == {"store": "ok"}
    api.ctx.checks["sip"] = lambda: False
    is_problem(api.get("/readyz", token=None), 503)


# -- sessions -----------------------------------------------------------------------------------

def test_create_allocates_from_the_pool_and_get_returns_it(api: Api) -> None:
    add_pool(api, V1)
    reply = api.post("/v1/sessions", {"a": {"number": ALICE}, "b": {"number": "(555) 123-0002"},
                                      "ttl_s": 3600, "metadata": {"order_id": "o-42"}},
                     token="operator")
    assert reply.status == 201
    session = reply.json
    assert reply.headers["location"] == f"/v1/sessions/{session['id']}"
    assert session["a"] == {"number": ALICE, "virtual": V1}
    assert session["b"] == {"number": BOB, "virtual": V1}
    assert session["status"] == "open" and session["ttl_s"] == 3600
    assert session["metadata"] == {"order_id": "o-42"}
    assert api.get(f"/v1/sessions/{session['id']}").json == session


def test_read_only_sees_masked_numbers(api: Api) -> None:
    add_pool(api, V1)
    session = create(api)
    seen = api.get(f"/v1/sessions/{session['id']}", token="viewer").json
    assert seen["a"]["number"] == f"+1 ***01 {api.admin.vault.token(ALICE)}"
    assert seen["b"]["number"] == f"+1 ***02 {api.admin.vault.token(BOB)}"
    assert seen["a"]["virtual"] == V1
    listed = api.get("/v1/sessions", token="viewer").json["items"]
    assert [s["a"]["number"] for s in listed] == [seen["a"]["number"]]
    assert ALICE not in json.dumps(seen) and BOB not in json.dumps(seen)


def test_pool_exhausted_is_409_naming_the_participant_not_the_number(api: Api) -> None:
    add_pool(api, V1)
    create(api)
    reply = api.post("/v1/sessions", {"a": {"number": CAROL}, "b": {"number": BOB}},
                     token="operator")
    body = is_problem(reply, 409)
    assert body["type"].endswith("pool-exhausted")
    assert "pool exhausted for this participant (B)" in body["detail"]
    assert BOB not in reply.body.decode() and BOB[1:] not in reply.body.decode()


def test_validation_errors_name_the_field_and_never_echo_the_value(api: Api) -> None:
    secret_like = "+1555123000999999999"
    cases = [
        ({"a": {"number": secret_like}, "b": {"number": BOB}}, "a.number"),
        ({"a": {"number": ALICE}}, "b"),
        ({"a": {"number": ALICE}, "b": {"number": BOB}, "ttl_s": -1}, "ttl_s"),
        ({"a": {"number": ALICE}, "b": {"number": BOB}, "ttl_s": True}, "ttl_s"),
        ({"a": {"number": ALICE}, "b": {"number": BOB}, "expires_at": "tomorrow"}, "expires_at"),
        ({"a": {"number": ALICE}, "b": {"number": BOB}, "mode": "fax"}, "mode"),
        ({"a": {"number": ALICE}, "b": {"number": BOB}, "colour": 1}, "colour"),
        ({"a": {"number": ALICE, "extra": 1}, "b": {"number": BOB}}, "a.extra"),
        ({"a": {"number": ALICE}, "b": {"number": BOB}, "metadata": {"k": [1]}}, "metadata.k"),
    ]
    for body, field in cases:
        reply = api.post("/v1/sessions", body, token="operator")
        is_problem(reply, 422, field)
        assert "5551230009" not in reply.body.decode()
        assert ALICE[2:] not in reply.body.decode()


def test_malformed_bodies_are_400(api: Api) -> None:
    as_json = {"Content-Type": "application/json"}
    is_problem(api.request("POST", "/v1/sessions", raw=b"{nope", token="operator", headers=as_json), 400)
    is_problem(api.request("POST", "/v1/sessions", raw=b"[1,2]", token="operator", headers=as_json), 400)
    is_problem(api.request("POST", "/v1/sessions", raw=b"", token="operator", headers=as_json), 400)
    is_problem(api.request("POST", "/v1/sessions", raw=b"x" * 70_000, token="operator",
                           headers=as_json), 413)


def test_a_body_not_sent_as_json_is_415(api: Api) -> None:
    body = b'{"a": {"number": "+15551230001"}, "b": {"number": "+15551230002"}}'
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}):
        reply = api.request("POST", "/v1/sessions", raw=body, token="operator", headers=headers)
        is_problem(reply, 415)
        assert reply.headers.get("accept-post") == "application/json"
    assert api.get("/v1/sessions", token="admin").json["items"] == []  # nothing was created


def test_read_only_tokens_cannot_filter_by_participant_number(api: Api) -> None:
    """A role that sees numbers masked must not confirm guesses through the filter."""
    is_problem(api.get("/v1/sessions?participant=%2B15551230001", token="viewer"), 403, "participant")
    assert api.get("/v1/sessions?participant=%2B15551230001", token="operator").status == 200


def test_a_source_that_keeps_failing_authentication_gets_429_and_a_log_line(api: Api) -> None:
    for n in range(10):
        is_problem(api.get("/v1/sessions", token=f"guess-{n}"), 401)
    reply = api.get("/v1/sessions", token="guess-x")
    is_problem(reply, 429)
    assert int(reply.headers["retry-after"]) >= 1
    # the good token from the same source is refused too until the bucket refills
    is_problem(api.get("/v1/sessions", token="admin"), 429)
    api.ctx.limits.failures.rate = 1000.0  # time passes
    assert api.get("/v1/sessions", token="admin").status == 200


def test_per_token_rate_limit_and_denied_requests_are_audited(api: Api) -> None:
    api.ctx.limits.tokens.rate = 0.001
    api.ctx.limits.tokens.burst = 3.0
    statuses = [api.get("/v1/sessions", token="operator").status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    assert api.get("/v1/sessions", token="admin").status == 200  # per token, not global
    api.ctx.limits.tokens.rate = 1000.0
    is_problem(api.get("/v1/audit", token="viewer"), 403)
    denied = [e for e in api.store.list_audit(limit=50) if e.action == "access.denied"]
    assert denied and denied[0].target == "/v1/audit" and denied[0].details["needs"] == "admin"


def test_unknown_routes_and_methods_are_problems(api: Api) -> None:
    is_problem(api.get("/v1/nothing"), 404)
    reply = api.request("PUT", "/v1/sessions")
    is_problem(reply, 405)
    is_problem(api.get("/v1/sessions/ps_0000000000000000"), 404)


def test_update_and_close(api: Api) -> None:
    add_pool(api, V1)
    session = create(api, ttl_s=60)
    sid = session["id"]
    reply = api.request("PATCH", f"/v1/sessions/{sid}",
                        {"expires_at": "2030-01-01T00:00:00Z", "ttl_s": None}, token="operator")
    assert reply.status == 200, reply.body
    assert reply.json["expires_at"] == "2030-01-01T00:00:00.000Z" and reply.json["ttl_s"] is None
    is_problem(api.request("PATCH", f"/v1/sessions/{sid}", {}, token="operator"), 422)
    is_problem(api.request("PATCH", f"/v1/sessions/{sid}", {"expires_at": "2001-01-01T00:00:00Z"},
                           token="operator"), 422)
    closed = api.post(f"/v1/sessions/{sid}/close", token="operator")
    assert closed.status == 200 and closed.json["status"] == "closed"
    assert api.request("DELETE", f"/v1/sessions/{sid}", token="operator").json["status"] == "closed"
    is_problem(api.request("PATCH", f"/v1/sessions/{sid}", {"ttl_s": 5}, token="operator"), 409)


def test_closed_session_frees_the_number_for_the_participant(api: Api) -> None:
    add_pool(api, V1)
    first = create(api)
    api.post(f"/v1/sessions/{first['id']}/close", token="operator")
    assert create(api, ALICE, CAROL)["a"]["virtual"] == V1


def test_list_filters_and_cursor_pagination(api: Api) -> None:
    add_pool(api, V1, V2)
    ids = []
    for i in range(5):
        ids.append(create(api, f"+1555777{i:04d}", f"+1555666{i:04d}",
                          metadata={"order_id": f"o-{i}"})["id"])
        api.clock.now += 10
    api.post(f"/v1/sessions/{ids[0]}/close", token="operator")
    seen, cursor = [], None
    while True:
        path = "/v1/sessions?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = api.get(path).json
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert [s["id"] for s in api.get("/v1/sessions?status=closed").json["items"]] == [ids[0]]
    assert len(api.get("/v1/sessions?status=open").json["items"]) == 4
    assert [s["id"] for s in api.get("/v1/sessions?metadata.order_id=o-3").json["items"]] == [
        ids[3]]
    assert [s["id"] for s in api.get("/v1/sessions?participant=%2B15557770002").json["items"]] == [
        ids[2]]
    # created at T0, T0+10, ... T0+40 (2023-11-14T22:13:20Z + 40 s)
    assert [s["id"] for s in api.get(
        "/v1/sessions?created_from=2023-11-14T22:13:50Z").json["items"]] == ids[3:]
    assert [s["id"] for s in api.get(
        "/v1/sessions?created_to=2023-11-14T23:13:31%2B01:00").json["items"]] == ids[:2]
    is_problem(api.get("/v1/sessions?status=bogus"), 422, "status")
    is_problem(api.get("/v1/sessions?cursor=zzz"), 422, "cursor")
    is_problem(api.get("/v1/sessions?limit=0"), 422, "limit")
    is_problem(api.get("/v1/sessions?colour=red"), 422, "colour")


def test_idempotency_key(api: Api) -> None:
    add_pool(api, V1, V2)
    body = {"a": {"number": ALICE}, "b": {"number": BOB}}
    first = api.post("/v1/sessions", body, token="operator", headers={"Idempotency-Key": "k-1"})
    again = api.post("/v1/sessions", body, token="operator", headers={"Idempotency-Key": "k-1"})
    assert first.status == again.status == 201
    assert again.json == first.json and again.headers.get("idempotent-replayed") == "true"
    other = api.post("/v1/sessions", {**body, "ttl_s": 5}, token="operator",
                     headers={"Idempotency-Key": "k-1"})
    is_problem(other, 422, "Idempotency-Key")
    assert len(api.get("/v1/sessions").json["items"]) == 1
    # keys are per token: another token's same key is a different request
    assert api.post("/v1/sessions", {"a": {"number": CAROL}, "b": {"number": BOB}},
                    token="admin", headers={"Idempotency-Key": "k-1"}).status == 201


def test_interactions_are_the_session_cdrs_with_tokens_only(api: Api) -> None:
    add_pool(api, V1)
    session = create(api)
    api.store.record_cdrs([Cdr("c_1", session["id"], "n_aaa", "n_bbb", api.clock.now, None,
                               api.clock.now + 1, "busy", 486, "", 0.0)])
    items = api.get(f"/v1/sessions/{session['id']}/interactions", token="viewer").json["items"]
    assert [(i["outcome"], i["sip_code"]) for i in items] == [("busy", 486)]
    is_problem(api.get("/v1/sessions/ps_0000000000000000/interactions"), 404)


# -- pool -----------------------------------------------------------------------------------------

def test_pool_add_list_drain_activate_remove(api: Api) -> None:
    add_pool(api, V1, V2)
    is_problem(api.post("/v1/pool/numbers", {"number": V1}), 409)
    is_problem(api.post("/v1/pool/numbers", {"number": "12"}), 422, "number")
    assert [n["number"] for n in api.get("/v1/pool/numbers").json["items"]] == [V1, V2]
    drained = api.post(f"/v1/pool/numbers/{V1}/drain")
    assert drained.json["status"] == "draining"
    session = create(api)
    assert session["a"]["virtual"] == V2  # draining numbers take no new sessions
    assert api.get("/v1/pool/numbers?status=draining").json["items"][0]["number"] == V1
    assert api.post(f"/v1/pool/numbers/{V1}/activate").json["status"] == "active"
    is_problem(api.request("DELETE", f"/v1/pool/numbers/{V2}"), 409)
    assert api.request("DELETE", f"/v1/pool/numbers/{V1}").status == 204
    is_problem(api.get(f"/v1/pool/numbers/{V1}"), 404)
    assert api.get(f"/v1/pool/numbers/{V2}").json["open_sessions"] == 2


# -- audit and privacy ------------------------------------------------------------------------

def test_every_change_is_audited_without_real_numbers(api: Api) -> None:
    add_pool(api, V1)
    session = create(api, metadata={"customer_phone": ALICE})
    api.request("PATCH", f"/v1/sessions/{session['id']}", {"ttl_s": 99}, token="operator")
    api.post(f"/v1/sessions/{session['id']}/close", token="operator")
    api.post(f"/v1/pool/numbers/{V1}/drain")
    reply = api.get("/v1/audit")
    actions = [e["action"] for e in reply.json["items"]]
    assert actions[:5] == ["pool.drain", "session.close", "session.update", "session.create",
                           "pool.add"]
    text = reply.body.decode() + repr(api.store.list_audit(limit=1000))
    for number in (ALICE, BOB):
        assert number not in text and number[1:] not in text and number[2:] not in text
    create_entry = reply.json["items"][3]
    assert create_entry["actor"].endswith("/operator")
    assert create_entry["details"]["a"] == api.admin.vault.token(ALICE)
    assert create_entry["details"]["metadata_keys"] == ["customer_phone"]


# -- metrics and OpenAPI ----------------------------------------------------------------------

def test_metrics_are_prometheus_text_with_route_templates(api: Api) -> None:
    add_pool(api, V1)
    api.get(f"/v1/pool/numbers/{V1}")
    reply = api.get("/metrics", token=None)
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    assert 'sipmask_api_requests_total{method="GET",route="/v1/pool/numbers/{number}",status="200"} 1.0' in text
    assert V1 not in text and V1[1:] not in text


def test_served_openapi_equals_the_checked_in_document(api: Api) -> None:
    served = api.get("/v1/openapi.json", token=None).json
    checked_in = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == checked_in == openapi_document(), (
        "regenerate with: python -m proxy.api.openapi > docs/openapi.json")
    assert served["openapi"].startswith("3.1")


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    paths = openapi_document()["paths"]
    served = {(r.path, r.method.lower()) for r in route_table()}
    documented = {(path, method) for path, ops in paths.items() for method in ops}
    assert served == documented


def test_session_changes_reach_the_routing_cache(api: Api) -> None:
    seen: list = []
    api.ctx.on_change = seen.append
    add_pool(api, V1)
    session = create(api, ttl_s=60)
    api.request("PATCH", f"/v1/sessions/{session['id']}", {"ttl_s": 120}, token="operator")
    api.post(f"/v1/sessions/{session['id']}/close", token="operator")
    assert [(s.id, s.status, s.ttl_s) for s in seen] == [
        (session["id"], "open", 60), (session["id"], "open", 120),
        (session["id"], "closed", 120)]


def test_start_api_serves_a_store_and_refuses_one_without_the_admin_interface(
        tmp_path: Path) -> None:
    import asyncio

    import structlog

    from proxy.api import start_api
    from proxy.config import ApiConfig
    from proxy.pairing import NumberVault, PairingService, SqliteStore

    class Log:
        def __init__(self) -> None:
            self.events: list[str] = []

        def info(self, event: str, **kw: object) -> None:
            self.events.append(event)

        error = info

    async def scenario() -> None:
        vault = NumberVault.from_secret(bytes(range(64)))
        store = SqliteStore(tmp_path / "s.db", vault)
        service = PairingService(store)
        log = Log()

        async def inline(fn):  # type: ignore[no-untyped-def]
            return fn()

        config = ApiConfig(host="127.0.0.1", port=0)
        assert await start_api(config, store=object(), vault=vault, service=service,
                               call=inline, sip_ready=lambda: True, log=log) is None
        assert log.events == ["api.unavailable"]
        server = await start_api(config, store=store, vault=vault, service=service,
                                 call=inline, sip_ready=lambda: False, log=structlog.get_logger())
        assert server is not None and server.port > 0
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = await reader.read()
        writer.close()
        assert b" 503 " in reply.split(b"\r\n")[0] and b"not ready: sip" in reply
        await server.stop()
        store.close()

    asyncio.run(scenario())


def test_sip_metrics_advance_counters_by_what_the_totals_grew() -> None:
    from proxy.api.server import _sip_collector
    from proxy.observability.metrics import Metrics

    metrics = Metrics()
    stats = {
        "sipmask_calls_active": {"": 3.0},
        "sipmask_sip_events_total": {"calls": 5.0, "overload": 2.0},
        "sipmask_overload_refusals_total": {"queue_delay": 1.0, "other": 1.0},
        "not_a_sip_metric": {"x": 1.0},
    }
    collect = _sip_collector(metrics, lambda: stats)
    collect()
    collect()  # reading twice counts nothing twice
    text = metrics.render()
    assert "sipmask_calls_active 3" in text
    assert 'sipmask_sip_events_total{event="calls"} 5' in text
    assert 'sipmask_overload_refusals_total{gate="queue_delay"} 1' in text
    assert "not_a_sip_metric" not in text
    assert "# TYPE sipmask_sip_events_total counter" in text
    stats["sipmask_sip_events_total"]["calls"] = 7.0
    stats["sipmask_calls_active"][""] = 1.0
    collect()
    text = metrics.render()
    assert 'sipmask_sip_events_total{event="calls"} 7' in text and "sipmask_calls_active 1" in text


def test_readyz_and_metrics_answer_at_once_while_the_store_is_frozen_or_down(api: Api) -> None:
    """A frozen store (Redis stopped with SIGSTOP: calls block in the store worker) makes
    /readyz 503 with "timeout" within the probe timeout, not a hanging request; /metrics
    stays 200 with the in-memory figures and says sipmask_store_up 0."""
    import concurrent.futures
    import threading
    import time

    from proxy.observability.metrics import Metrics

    worker = concurrent.futures.ThreadPoolExecutor(1)
    released = threading.Event()

    async def via_worker(fn):  # type: ignore[no-untyped-def]
        import asyncio
        return await asyncio.get_running_loop().run_in_executor(worker, fn)

    metrics = Metrics()
    seen = metrics.gauge("sipmask_test_memory", "set on the loop")
    state = {"store": "frozen"}

    def store_ping() -> bool:
        if state["store"] == "frozen":
            released.wait(10)
        if state["store"] == "down":
            raise ConnectionError("store down")
        return True

    def collect_store() -> None:
        store_ping()

    api.ctx.call = via_worker
    api.ctx.metrics = metrics
    api.ctx.probe_timeout_s = 0.3
    api.ctx.checks["store"] = store_ping
    api.ctx.collectors.append(lambda: seen.set(7))
    api.ctx.store_collectors.append(collect_store)
    try:
        started = time.monotonic()
        ready = api.get("/readyz", token=None)
        assert ready.status == 503 and "store" in ready.json["detail"], ready.json
        assert time.monotonic() - started < 3
        reply = api.get("/metrics", token=None)
        assert reply.status == 200
        assert "sipmask_test_memory 7" in reply.body.decode()
        assert "sipmask_store_up 0" in reply.body.decode()
        released.set()  # the store thaws, then fails outright
        state["store"] = "down"
        assert api.get("/readyz", token=None).status == 503
        reply = api.get("/metrics", token=None)
        assert reply.status == 200 and "sipmask_store_up 0" in reply.body.decode()
        state["store"] = "up"  # and comes back
        assert api.get("/readyz", token=None).status == 200
        assert "sipmask_store_up 1" in api.get("/metrics", token=None).body.decode()
    finally:
        released.set()
        worker.shutdown(wait=True)
