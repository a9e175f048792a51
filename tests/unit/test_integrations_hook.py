"""The lookup hook against a real aiohttp endpoint on 127.0.0.1: answers, failures that
reject, caching, coalescing, signatures, tokens versus numbers, and no number in the logs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aiohttp import web

from proxy.config import HookConfig
from proxy.integrations.hook import MISSING, LookupHook
from proxy.integrations.signing import verify
from proxy.observability.metrics import Metrics
from proxy.observability.redaction import contains_phone_number
from proxy.pairing.crypto import NumberVault
from proxy.pairing.model import Match

CALLER, CALLEE, VIRTUAL, OTHER_VIRTUAL = "+15551230001", "+15551230002", "+15559990001", "+15559990002"
VAULT = NumberVault.from_secret(bytes(range(64)))
SECRET = "hook-secret"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Endpoint:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@asynccontextmanager
async def endpoint(reply: Callable[[dict[str, Any]], Awaitable[web.StreamResponse]]
                   ) -> AsyncIterator[Endpoint]:
    """An HTTP server on 127.0.0.1 that records each request and answers with *reply*."""
    ep = Endpoint("")

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        ep.requests.append((dict(request.headers), body))
        return await reply(json.loads(body))

    app = web.Application()
    app.router.add_post("/lookup", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.05)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    ep.url = f"http://127.0.0.1:{port}/lookup"
    try:
        yield ep
    finally:
        await runner.cleanup()


def answer(obj: Any, status: int = 200) -> Callable[[dict[str, Any]], Awaitable[web.Response]]:
    async def reply(_: dict[str, Any]) -> web.Response:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        return web.Response(status=status, text=text, content_type="application/json")
    return reply


CONNECT = {"action": "connect", "number": CALLEE}


def outcomes(hook: LookupHook) -> dict[str, float]:
    counter = hook.metrics.get("sipmask_hook_requests_total")
    assert counter is not None
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1])
            for line in counter.render().splitlines() if not line.startswith("#")}


def make(url: str, **kw: Any) -> LookupHook:
    kw.setdefault("vault", VAULT)
    kw.setdefault("timeout_s", 2.0)
    return LookupHook(url, **kw)


# -- answers ------------------------------------------------------------------------------------

def test_connect_with_numbers_defaults_present_to_the_dialed_virtual_number() -> None:
    async def main() -> None:
        async with endpoint(answer({"action": "connect", "number": "+1 (555) 123-0002"})) as ep:
            hook = make(ep.url, send="numbers")
            assert await hook.resolve(CALLER, VIRTUAL) == Match("hook", CALLEE, VIRTUAL)
            await hook.close()
        (headers, _), = ep.requests
        body = ep.bodies[0]
        assert body["caller"] == CALLER and body["virtual"] == VIRTUAL and body["send"] == "numbers"
        assert headers["X-Sipmask-Request-Id"] == body["request_id"] and len(body["request_id"]) == 32
        assert headers["Content-Type"] == "application/json"
        assert "X-Sipmask-Signature" not in headers and "Authorization" not in headers
        assert outcomes(hook) == {"connect": 1}
    asyncio.run(main())


def test_connect_with_present_and_national_number_in_default_region() -> None:
    async def main() -> None:
        async with endpoint(answer({"action": "connect", "number": "020 7946 0958",
                                    "present": "tel:+15559990002"})) as ep:
            hook = make(ep.url, default_region="GB")
            assert await hook.resolve(CALLER, VIRTUAL) == Match("hook", "+442079460958",
                                                                OTHER_VIRTUAL)
            await hook.close()
    asyncio.run(main())


def test_tokens_mode_sends_no_real_caller_number() -> None:
    async def main() -> None:
        async with endpoint(answer(CONNECT)) as ep:
            hook = make(ep.url)  # send = "tokens" is the default
            assert await hook.resolve(CALLER, VIRTUAL) == Match("hook", CALLEE, VIRTUAL)
            await hook.close()
        (headers, raw), = ep.requests
        assert ep.bodies[0]["caller"] == VAULT.token(CALLER)
        assert ep.bodies[0]["send"] == "tokens" and ep.bodies[0]["virtual"] == VIRTUAL
        assert CALLER.lstrip("+") not in raw.decode() + json.dumps(headers)
    asyncio.run(main())


def test_reject_is_cached_like_connect() -> None:
    async def main() -> None:
        async with endpoint(answer({"action": "reject"})) as ep:
            hook = make(ep.url)
            assert await hook.resolve(CALLER, VIRTUAL) is None
            assert await hook.resolve(CALLER, VIRTUAL) is None
            assert hook.cached(CALLER, VIRTUAL) is None
            assert len(ep.requests) == 1
            assert outcomes(hook) == {"reject": 1}
            await hook.close()
    asyncio.run(main())


# -- failures reject, are counted, and are not cached ------------------------------------------

async def _never(_: dict[str, Any]) -> web.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (answer(CONNECT, status=500), "http_error"),
        (answer(CONNECT, status=302), "http_error"),
        (answer("{not json"), "bad_json"),
        (answer(["connect"]), "bad_json"),
        (answer({"action": "maybe"}), "bad_answer"),
        (answer({"action": "connect"}), "bad_answer"),
        (answer({"action": "connect", "number": "12"}), "bad_answer"),
        (answer({"action": "connect", "number": "not a number"}), "bad_answer"),
        (answer({"action": "connect", "number": 15551230002}), "bad_answer"),
        (answer({"action": "connect", "number": CALLEE, "present": "+1"}), "bad_answer"),
        (_never, "timeout"),
    ],
)
def test_failures_reject_and_are_not_cached(reply: Any, outcome: str) -> None:
    async def main() -> list[dict[str, Any]]:
        async with endpoint(reply) as ep:
            hook = make(ep.url, timeout_s=0.1, send="numbers")
            with structlog.testing.capture_logs() as logs:
                assert await hook.resolve(CALLER, VIRTUAL) is None
            assert hook.cached(CALLER, VIRTUAL) is MISSING
            assert outcomes(hook) == {outcome: 1}
            await hook.close()
        return logs
    logs = asyncio.run(main())
    (event,) = [e for e in logs if e["event"] == "hook.failed"]
    assert event["reason"] == outcome and event["caller_token"] == VAULT.token(CALLER)
    assert not contains_phone_number(repr(logs))


def test_network_error_rejects() -> None:
    async def main() -> None:
        async with endpoint(answer(CONNECT)) as ep:
            url = ep.url
        hook = make(url)  # the server is gone: connection refused
        assert await hook.resolve(CALLER, VIRTUAL) is None
        assert outcomes(hook) == {"network_error": 1}
        await hook.close()
    asyncio.run(main())


def test_body_too_large_rejects() -> None:
    async def main() -> None:
        big = {"action": "connect", "number": CALLEE, "pad": "x" * 70000}
        async with endpoint(answer(big)) as ep:
            hook = make(ep.url)
            assert await hook.resolve(CALLER, VIRTUAL) is None
            assert outcomes(hook) == {"bad_json": 1}
            await hook.close()
    asyncio.run(main())


# -- cache --------------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_expires_after_cache_s_and_is_lru_bounded() -> None:
    async def main() -> None:
        clock = Clock()
        async with endpoint(answer(CONNECT)) as ep:
            hook = make(ep.url, cache_s=30, cache_size=2, clock=clock)
            assert hook.cached(CALLER, VIRTUAL, clock.now) is MISSING
            await hook.resolve(CALLER, VIRTUAL)
            assert hook.cached(CALLER, VIRTUAL, clock.now + 29.9) == Match("hook", CALLEE, VIRTUAL)
            assert hook.cached(CALLER, VIRTUAL, clock.now + 30.0) is MISSING  # and dropped
            assert len(hook) == 0
            clock.now += 31
            await hook.resolve(CALLER, VIRTUAL)
            assert len(ep.requests) == 2
            await hook.resolve("+15551230003", VIRTUAL)
            hook.cached(CALLER, VIRTUAL)  # touch: the other entry is now least recently used
            await hook.resolve("+15551230004", VIRTUAL)
            assert len(hook) == 2
            assert hook.cached(CALLER, VIRTUAL) != MISSING
            assert hook.cached("+15551230003", VIRTUAL) is MISSING
            hook.clear()
            assert hook.cached(CALLER, VIRTUAL) is MISSING
            await hook.close()
    asyncio.run(main())


def test_cache_off() -> None:
    async def main() -> None:
        async with endpoint(answer(CONNECT)) as ep:
            hook = make(ep.url, cache_s=0)
            await hook.resolve(CALLER, VIRTUAL)
            await hook.resolve(CALLER, VIRTUAL)
            assert len(ep.requests) == 2 and hook.cached(CALLER, VIRTUAL) is MISSING
            await hook.close()
    asyncio.run(main())


# -- coalescing ---------------------------------------------------------------------------------

def test_concurrent_lookups_of_one_key_share_one_request() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def slow(_: dict[str, Any]) -> web.Response:
            await release.wait()
            return web.json_response(CONNECT)

        async with endpoint(slow) as ep:
            hook = make(ep.url)
            same = [asyncio.ensure_future(hook.resolve(CALLER, VIRTUAL)) for _ in range(5)]
            other = asyncio.ensure_future(hook.resolve(CALLER, OTHER_VIRTUAL))
            while len(ep.requests) < 2:
                await asyncio.sleep(0.001)
            same[0].cancel()  # one caller giving up does not cancel the shared request
            release.set()
            results = await asyncio.gather(*same[1:], other)
            assert results == [Match("hook", CALLEE, VIRTUAL)] * 4 + [
                Match("hook", CALLEE, OTHER_VIRTUAL)]
            assert same[0].cancelled()
            assert len(ep.requests) == 2
            coalesced = hook.metrics.get("sipmask_hook_coalesced_total")
            assert coalesced is not None and "sipmask_hook_coalesced_total 4" in coalesced.render()
            await hook.close()
    asyncio.run(main())


def test_close_answers_waiting_lookups_with_reject() -> None:
    async def main() -> None:
        async with endpoint(_never) as ep:
            hook = make(ep.url)
            waiting = asyncio.ensure_future(hook.resolve(CALLER, VIRTUAL))
            while not ep.requests:
                await asyncio.sleep(0.001)
            await hook.close()
            assert await waiting is None
            assert await hook.resolve(CALLER, OTHER_VIRTUAL) is None  # closed: no request
            assert len(ep.requests) == 1
    asyncio.run(main())


# -- authentication -----------------------------------------------------------------------------

def test_signature_and_bearer_token_verify_at_the_receiver() -> None:
    async def main() -> None:
        async with endpoint(answer(CONNECT)) as ep:
            hook = make(ep.url, secret=SECRET, bearer_token="tok-123", wall_clock=lambda: 1.7e9)
            await hook.resolve(CALLER, VIRTUAL)
            await hook.close()
        (headers, body), = ep.requests
        assert headers["Authorization"] == "Bearer tok-123"
        assert headers["X-Sipmask-Timestamp"] == "1700000000"
        signature = headers["X-Sipmask-Signature"]
        assert signature.startswith("sha256=")
        assert verify(SECRET, headers["X-Sipmask-Timestamp"], body, signature, now=1.7e9 + 10)
        assert not verify("wrong", headers["X-Sipmask-Timestamp"], body, signature)
        assert not verify(SECRET, headers["X-Sipmask-Timestamp"], body + b" ", signature)
        assert not verify(SECRET, headers["X-Sipmask-Timestamp"], body, signature, now=1.7e9 + 900)
    asyncio.run(main())


# -- construction -------------------------------------------------------------------------------

def test_tokens_need_a_vault_and_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="NumberVault"):
        LookupHook("http://127.0.0.1:1/", send="tokens")
    with pytest.raises(ValueError, match="send"):
        LookupHook("http://127.0.0.1:1/", send="hashes", vault=VAULT)
    with pytest.raises(ValueError):
        LookupHook("http://127.0.0.1:1/", vault=VAULT, timeout_s=0)


def test_from_config() -> None:
    config = HookConfig(url="http://127.0.0.1:9/x", send="numbers", timeout_s=0.3, cache_s=5,
                        cache_size=7, secret="s", bearer_token="b", default_region="GB")
    metrics = Metrics()
    hook = LookupHook.from_config(config, None, metrics)
    assert (hook.url, hook.send, hook.timeout_s, hook.cache_s, hook.cache_size) == (
        "http://127.0.0.1:9/x", "numbers", 0.3, 5, 7)
    assert hook.metrics is metrics and metrics.get("sipmask_hook_requests_total") is not None
    with pytest.raises(ValueError, match="hook.url"):
        LookupHook.from_config(HookConfig(), VAULT)
