"""The HTTP API drives real calls: pool and session created over HTTP, a SIPp call through
the allocated virtual number, the session closed over HTTP, the next call rejected."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    A_REAL,
    A_VIRTUAL,
    B_PREFIX,
    B_REAL,
    CALLEE_IP,
    assert_isolated,
    assert_sipp_ok,
    find,
    number_forms,
)

pytestmark = pytest.mark.e2e


def http(sm: Any, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(sm.api_url + path, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            raw = reply.read()
            return reply.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_session_created_over_http_routes_a_call_until_closed(sipp, sipmask_factory,
                                                              tmp_path: Path) -> None:
    callee = sipp.start_uas("uas_basic.xml")
    sm = sipmask_factory([(B_PREFIX, [f"udp:{CALLEE_IP}:{callee.port}"])], pairing=False,
                         start=False)
    made = sm.cli("token", "create", "e2e", "--role", "admin")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    sm.start()

    status, _ = http(sm, "POST", "/v1/pool/numbers", token, {"number": A_VIRTUAL})
    assert status == 201
    status, session = http(sm, "POST", "/v1/sessions", token,
                           {"a": {"number": A_REAL}, "b": {"number": B_REAL}, "ttl_s": 600})
    assert status == 201, session
    # one pool number: both participants get it (each dials it to reach the other)
    assert session["a"]["virtual"] == session["b"]["virtual"] == A_VIRTUAL

    caller = sipp.run_uac("uac_basic.xml", sm.udp_target, service=A_VIRTUAL)
    sipp.wait(callee)
    assert_sipp_ok(caller, callee)
    invite = find(callee.messages(), method="INVITE", request=True)[0]
    assert invite.start.split()[1].startswith(f"sip:{B_REAL}@"), invite.start
    assert A_VIRTUAL in (invite.header("From") or "")
    assert_isolated(caller, callee)

    # the call shows up as an interaction (CDRs are flushed every second)
    deadline = time.monotonic() + 5
    while True:
        status, calls = http(sm, "GET", f"/v1/sessions/{session['id']}/interactions", token)
        if calls["items"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200 and [c["outcome"] for c in calls["items"]] == ["completed"]

    status, closed = http(sm, "POST", f"/v1/sessions/{session['id']}/close", token)
    assert status == 200 and closed["status"] == "closed"

    csv = tmp_path / "after-close.csv"
    csv.write_text(f"SEQUENTIAL\n{A_REAL};{A_VIRTUAL}\n")
    late = sipp.run_uac("uac_rejected.xml", sm.udp_target, service="unused", name="caller-late",
                        extra=["-inf", str(csv)])
    assert_sipp_ok(late)
    finals = [m for m in late.messages() if m.is_response and (m.status or 0) >= 200]
    assert [m.status for m in finals] == [404]

    # /metrics carries the SIP side: the call, the rejection, the messages; no number in it
    with urllib.request.urlopen(sm.api_url + "/metrics", timeout=10) as reply:
        metrics = reply.read().decode()
    samples = dict(line.rsplit(" ", 1) for line in metrics.splitlines()
                   if line and not line.startswith("#"))
    assert float(samples['sipmask_sip_events_total{event="calls"}']) == 1, metrics
    assert float(samples['sipmask_sip_events_total{event="no_pairing"}']) == 1, metrics
    assert float(samples['sipmask_sip_messages_total{kind="received"}']) >= 5, metrics
    assert float(samples['sipmask_overload_refusals_total{gate="queue_delay"}']) == 0, metrics
    assert float(samples["sipmask_calls_active"]) == 0, metrics
    for number in (A_REAL, B_REAL, A_VIRTUAL):
        assert number.lstrip("+") not in metrics

    # the audit log has the three changes; neither it nor the process log has a real number
    status, audit = http(sm, "GET", "/v1/audit", token)
    assert [e["action"] for e in audit["items"]][:3] == ["session.close", "session.create",
                                                         "pool.add"]
    text = json.dumps(audit) + sm.stderr()
    for number in (A_REAL, B_REAL):
        for form in number_forms(number):
            assert not re.search(rf"(?<!\d){re.escape(form)}(?!\d)", text), form
