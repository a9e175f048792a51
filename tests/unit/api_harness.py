"""A real API server on 127.0.0.1 in a background thread, and a small sync HTTP client."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from proxy.api import ApiContext, ApiServer
from proxy.pairing import NumberVault, SqliteStore
from proxy.pairing.admin import PairingAdmin
from proxy.pairing.stores import ApiStore
from proxy.pairing.stores.redis import RedisStore

SECRET = bytes(range(64))


class Clock:
    """A settable clock (epoch seconds)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip()


@dataclass
class Api:
    """Handle of a running test API."""

    port: int
    store: ApiStore
    admin: PairingAdmin
    clock: Clock
    ctx: ApiContext
    tokens: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = "admin",
                headers: dict[str, str] | None = None, raw: bytes | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {self.tokens.get(token, token)}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)


@contextmanager
def running_api(tmp_path: Path, redis_url: str | None = None) -> Iterator[Api]:
    """Start the API on a free port with admin/operator/viewer tokens, on a SQLite file in
    `tmp_path` or, given `redis_url`, on a Redis store there (flushed by the caller)."""
    vault = NumberVault.from_secret(SECRET)
    store: ApiStore = (SqliteStore(tmp_path / "api.db", vault) if redis_url is None
                       else RedisStore.from_url(redis_url, vault))
    clock = Clock()
    admin = PairingAdmin(store, vault, clock=clock)
    ctx = ApiContext(admin=admin, clock=clock, checks={"store": store.ping})
    tokens = {}
    for name, role in (("admin", "admin"), ("operator", "operator"), ("viewer", "read-only")):
        _, secret = admin.create_token("test", name, role)
        tokens[name] = secret
    loop = asyncio.new_event_loop()
    server = ApiServer(ctx, structlog.get_logger("test"))
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start("127.0.0.1", 0))
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield Api(server.port, store, admin, clock, ctx, tokens)
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        store.close()
