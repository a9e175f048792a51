"""Event webhooks against a real aiohttp receiver on 127.0.0.1: signatures a receiver can
verify, retries with backoff, giving up, no numbers by default, bounded queue, drain on close."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aiohttp import web

from proxy.config import WebhookConfig
from proxy.integrations.signing import verify
from proxy.integrations.webhooks import WebhookSink, cdr_payload
from proxy.observability.redaction import contains_phone_number
from proxy.pairing.crypto import NumberVault
from proxy.pairing.model import Cdr

CALLER, CALLEE = "+15551230001", "+15551230002"
VAULT = NumberVault.from_secret(bytes(range(64)))
SECRET = "whsec-test"
ENDED = {"session_id": "s_1", "outcome": "answered", "sip_code": 200, "duration_s": 12.5,
         "cause": "caller hung up", "started_at": 1.7e9, "answered_at": 1.7e9 + 2,
         "ended_at": 1.7e9 + 14.5}


@dataclass
class Receiver:
    url: str = ""
    statuses: list[int] = field(default_factory=list)  # answered in turn; then 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    hang: bool = False
    retry_after: str | None = None

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@asynccontextmanager
async def receiver(**kw: Any) -> AsyncIterator[Receiver]:
    rx = Receiver(**kw)

    async def handle(request: web.Request) -> web.Response:
        rx.requests.append((dict(request.headers), await request.read()))
        if rx.hang:
            await asyncio.Event().wait()
        status = rx.statuses.pop(0) if rx.statuses else 200
        headers = {"Retry-After": rx.retry_after} if rx.retry_after and status >= 400 else {}
        return web.Response(status=status, headers=headers)

    app = web.Application()
    app.router.add_post("/events", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.05)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    rx.url = f"http://127.0.0.1:{runner.addresses[0][1]}/events"
    try:
        yield rx
    finally:
        await runner.cleanup()


def sink(*specs: WebhookConfig, **kw: Any) -> WebhookSink:
    kw.setdefault("vault", VAULT)
    kw.setdefault("backoff_s", 0.001)
    kw.setdefault("backoff_max_s", 0.01)
    kw.setdefault("rng", random.Random(7))
    return WebhookSink(specs, **kw)


def run(main: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(main())


def test_signed_event_verifies_at_the_receiver() -> None:
    async def main() -> None:
        async with receiver() as rx:
            s = sink(WebhookConfig(rx.url, secret=SECRET), clock=lambda: 1.7e9)
            await s.start()
            assert s.emit("call.ended", ENDED, numbers={"caller": CALLER, "callee": CALLEE})
            await s.close()
        (headers, body), = rx.requests
        assert headers["X-Sipmask-Event"] == "call.ended"
        assert headers["X-Sipmask-Timestamp"] == "1700000000"
        assert headers["Content-Type"] == "application/json"
        assert verify(SECRET, headers["X-Sipmask-Timestamp"], body,
                      headers["X-Sipmask-Signature"], now=1.7e9)
        assert not verify("other", headers["X-Sipmask-Timestamp"], body,
                          headers["X-Sipmask-Signature"])
        event = json.loads(body)
        assert event["id"] == headers["X-Sipmask-Delivery"] and len(event["id"]) == 32
        assert event["type"] == "call.ended" and event["created_at"] == 1.7e9
        assert event["data"] == {**ENDED, "caller_token": VAULT.token(CALLER),
                                 "callee_token": VAULT.token(CALLEE)}
        assert s.counts["delivered"] == 1 and s.counts["queued"] == 1
    run(main)


def test_no_secret_no_signature_header() -> None:
    async def main() -> None:
        async with receiver() as rx:
            s = sink(WebhookConfig(rx.url))
            await s.start()
            s.emit("session.expired", {"session_id": "s_1"})
            await s.close()
        assert "X-Sipmask-Signature" not in rx.requests[0][0]
    run(main)


def test_no_real_number_unless_include_numbers() -> None:
    async def main() -> None:
        async with receiver() as private, receiver() as trusted:
            s = sink(WebhookConfig(trusted.url, include_numbers=True), WebhookConfig(private.url))
            await s.start()
            s.emit("call.started", {"session_id": "s_1", "started_at": 1.7e9},
                   numbers={"caller": CALLER, "callee": CALLEE})
            await s.close()
        (headers, body), = private.requests
        seen = body.decode() + json.dumps(headers)
        assert CALLER[1:] not in seen and CALLEE[1:] not in seen
        assert json.loads(body)["data"]["caller_token"] == VAULT.token(CALLER)
        data = trusted.bodies[0]["data"]
        assert (data["caller"], data["callee"]) == (CALLER, CALLEE)
        assert data["caller_token"] == VAULT.token(CALLER)
        assert trusted.bodies[0]["id"] == private.bodies[0]["id"]
    run(main)


def test_number_slipped_into_a_payload_is_replaced_by_a_token() -> None:
    async def main() -> None:
        async with receiver() as rx:
            s = sink(WebhookConfig(rx.url))
            await s.start()
            with structlog.testing.capture_logs() as logs:
                s.emit("call.ended", {"cause": f"BYE from {CALLER}", "extra": {"to": [CALLEE]}})
            await s.close()
        data = rx.bodies[0]["data"]
        assert data["cause"].startswith("n_") and data["extra"]["to"][0].startswith("n_")
        assert not contains_phone_number(json.dumps(data))
        assert [e["field"] for e in logs if e["event"] == "webhook.payload_redacted"] == [
            "cause", "extra.to"]
        assert not contains_phone_number(repr(logs))
    run(main)


def test_events_filter() -> None:
    async def main() -> None:
        async with receiver() as rx:
            s = sink(WebhookConfig(rx.url, events=("call.ended",)))
            await s.start()
            assert s.emit("call.started", {"session_id": "s_1"})  # nobody wants it: fine
            s.emit("call.ended", {"session_id": "s_1"})
            await s.close()
        assert [b["type"] for b in rx.bodies] == ["call.ended"]
    run(main)


def test_retries_on_500_then_succeeds_with_the_same_delivery_id() -> None:
    async def main() -> None:
        async with receiver(statuses=[500, 503]) as rx:
            s = sink(WebhookConfig(rx.url, secret=SECRET, max_attempts=5))
            await s.start()
            s.emit("call.answered", {"session_id": "s_1"})
            await s.close()
        assert len(rx.requests) == 3
        assert len({headers["X-Sipmask-Delivery"] for headers, _ in rx.requests}) == 1
        assert len({body for _, body in rx.requests}) == 1
        for headers, body in rx.requests:  # re-signed per attempt, each valid
            assert verify(SECRET, headers["X-Sipmask-Timestamp"], body,
                          headers["X-Sipmask-Signature"])
        assert (s.counts["retried"], s.counts["delivered"], s.counts["failed"]) == (2, 1, 0)
    run(main)


def test_429_is_retried_and_retry_after_is_capped() -> None:
    async def main() -> None:
        async with receiver(statuses=[429], retry_after="3600") as rx:
            s = sink(WebhookConfig(rx.url))
            await s.start()
            s.emit("call.ended", {})
            await s.close(timeout_s=2)
        assert len(rx.requests) == 2 and s.counts["delivered"] == 1
    run(main)


def test_gives_up_after_max_attempts() -> None:
    async def main() -> None:
        async with receiver(statuses=[500] * 10) as rx:
            s = sink(WebhookConfig(rx.url, max_attempts=3))
            await s.start()
            with structlog.testing.capture_logs() as logs:
                s.emit("call.ended", ENDED, numbers={"caller": CALLER})
                await s.close()
        assert len(rx.requests) == 3
        assert (s.counts["retried"], s.counts["failed"], s.counts["delivered"]) == (2, 1, 0)
        (failed,) = [e for e in logs if e["event"] == "webhook.failed"]
        assert failed["attempts"] == 3 and failed["status"] == 500
        rendered = s.metrics.render()
        assert 'sipmask_webhook_deliveries_total{endpoint="0",result="failed"} 1' in rendered
        assert not contains_phone_number(repr(logs))
    run(main)


def test_client_error_is_not_retried() -> None:
    async def main() -> None:
        async with receiver(statuses=[400]) as rx:
            s = sink(WebhookConfig(rx.url, max_attempts=5))
            await s.start()
            s.emit("call.ended", {})
            await s.close()
        assert len(rx.requests) == 1 and s.counts["failed"] == 1
    run(main)


def test_network_errors_are_retried_then_given_up() -> None:
    async def main() -> None:
        async with receiver() as rx:
            url = rx.url
        s = sink(WebhookConfig(url, max_attempts=2))  # nothing listens there any more
        await s.start()
        s.emit("call.ended", {})
        await s.close()
        assert (s.counts["retried"], s.counts["failed"]) == (1, 1)
    run(main)


def test_queue_overflow_is_dropped_and_counted() -> None:
    async def main() -> None:
        async with receiver() as rx:
            s = sink(WebhookConfig(rx.url), queue_size=2)
            results = [s.emit("call.started", {"n": i}) for i in range(5)]  # not started yet
            assert results == [True, True, False, False, False]
            assert (s.counts["queued"], s.counts["dropped"]) == (2, 3)
            assert 'sipmask_webhook_events_total{endpoint="0",result="dropped"} 3' \
                in s.metrics.render()
            await s.start()
            await s.close()
            assert not s.emit("call.started", {})  # closed: dropped too
        assert [b["data"]["n"] for b in rx.bodies] == [0, 1]
        assert s.counts["dropped"] == 4
    run(main)


def test_close_drains_with_a_deadline_and_counts_what_is_abandoned() -> None:
    async def main() -> None:
        async with receiver(hang=True) as rx:
            s = sink(WebhookConfig(rx.url, timeout_s=30), workers=1)
            await s.start()
            s.emit("call.started", {})
            s.emit("call.ended", {})
            while not rx.requests:
                await asyncio.sleep(0.001)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await s.close(timeout_s=0.05)
            assert loop.time() - started < 1.0
        assert s.counts["abandoned"] == 2 and s.counts["delivered"] == 0
    run(main)


def test_unknown_event_type_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        sink(WebhookConfig("http://127.0.0.1:9/")).emit("call.rang", {})


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    s = WebhookSink([], backoff_s=1.0, backoff_max_s=8.0, rng=random.Random(1))
    for attempt, full in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = {s._backoff(attempt, None) for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays) and len(delays) > 1
    assert s._backoff(1, "5") == 5.0 and s._backoff(1, "100") == 8.0
    assert s._backoff(1, "Wed, 21 Oct 2015 07:28:00 GMT") <= 1.0
    assert not s.enabled


def test_cdr_payload_carries_tokens_only() -> None:
    cdr = Cdr("c_1", "s_1", VAULT.token(CALLER), VAULT.token(CALLEE), 1.0, 2.0, 10.0,
              "answered", 200, "", 8.0)
    payload = cdr_payload(cdr)
    assert payload["caller_token"] == VAULT.token(CALLER) and payload["duration_s"] == 8.0
    assert payload["session_id"] == "s_1" and payload["sip_code"] == 200
    assert not contains_phone_number(json.dumps(payload))
