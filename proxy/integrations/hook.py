"""The lookup hook: ask an HTTP endpoint where to send a call that matches no session.

sipmask POSTs ``{"caller", "virtual", "request_id", "send"}`` to the configured URL; the caller
is a keyed token (``send = "tokens"``, the default) or the real number (``"numbers"``); the
dialed virtual number is always in clear (it is sipmask's own pool number, and without it the
endpoint could not tell which business line was called). The answer is::

    {"action": "connect", "number": "+15551230002", "present": "+15559990001"}
    {"action": "reject"}

``present`` is optional (default: the dialed virtual number). A timeout, a non-2xx status, a
body that is not that JSON, or a number that is not a possible E.164 number reject the call,
and are logged and counted without any number. Answers (connect and reject, not failures) are
cached for ``cache_s`` in a bounded LRU, so the B2BUA can often answer an INVITE synchronously
with :meth:`LookupHook.cached`; concurrent :meth:`LookupHook.resolve` calls for the same
(caller, virtual) share one request. docs/hooks.md describes the wire format.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Literal

import aiohttp

from ..observability.logging import get_logger
from ..observability.metrics import Metrics
from ..pairing.crypto import NumberVault
from ..pairing.model import Match
from ..pairing.normalize import InvalidNumber, normalize_number
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

if TYPE_CHECKING:
    from ..config import HookConfig

__all__ = ["HOOK_SESSION_ID", "MISSING", "LookupHook", "Missing"]

HOOK_SESSION_ID: Final = "hook"
"""`Match.session_id` of every match the hook makes (no session exists in the store)."""

REQUEST_ID_HEADER: Final = "X-Sipmask-Request-Id"
_MAX_BODY: Final = 64 * 1024
_OUTCOMES: Final = ("connect", "reject", "timeout", "http_error", "network_error",
                    "bad_json", "bad_answer")

log = get_logger(__name__)


class Missing(enum.Enum):
    """Type of :data:`MISSING`: "the cache has no answer", distinct from None (reject)."""

    MISSING = "MISSING"


MISSING: Final = Missing.MISSING

Send = Literal["tokens", "numbers"]
_Key = tuple[str, str]


class _Failure(Exception):
    """Why a lookup produced no answer; `outcome` is one of the metric's label values."""

    def __init__(self, outcome: str, **fields: Any) -> None:
        super().__init__(outcome)
        self.outcome = outcome
        self.fields = fields


class LookupHook:
    """Resolves ``(caller, virtual)`` to a :class:`Match` by asking an HTTP endpoint.

    One instance per process, used from one event loop. `clock` is monotonic and is the
    clock of the `now` given to :meth:`cached` (the B2BUA's ``now``); `wall_clock` gives the
    signed timestamp.
    """

    def __init__(
        self,
        url: str,
        *,
        send: Send | str = "tokens",
        vault: NumberVault | None = None,
        timeout_s: float = 1.0,
        cache_s: float = 30.0,
        cache_size: int = 10000,
        secret: str | bytes | None = None,
        bearer_token: str | None = None,
        default_region: str = "US",
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        request_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        if send not in ("tokens", "numbers"):
            raise ValueError(f'send must be "tokens" or "numbers", got {send!r}')
        if send == "tokens" and vault is None:
            raise ValueError('send = "tokens" needs a NumberVault to make the tokens')
        if timeout_s <= 0 or cache_s < 0 or cache_size < 1:
            raise ValueError("timeout_s must be > 0, cache_s >= 0 and cache_size >= 1")
        self.url = url
        self.send = send
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self.cache_size = cache_size
        self._vault = vault
        self._secret = secret
        self._bearer = bearer_token
        self._region = default_region
        self._clock = clock
        self._wall_clock = wall_clock
        self._request_id = request_id
        self._cache: OrderedDict[_Key, tuple[float, Match | None]] = OrderedDict()
        self._inflight: dict[_Key, asyncio.Task[Match | None]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.metrics = metrics if metrics is not None else Metrics()
        self._requests = self.metrics.counter(
            "sipmask_hook_requests_total", "Lookup hook requests by outcome.", ["outcome"])
        self._seconds = self.metrics.histogram(
            "sipmask_hook_request_seconds", "Lookup hook request duration.")
        self._coalesced = self.metrics.counter(
            "sipmask_hook_coalesced_total", "Lookups that joined a request already in flight.")

    @classmethod
    def from_config(cls, config: HookConfig, vault: NumberVault | None,
                    metrics: Metrics | None = None) -> LookupHook:
        """A hook for ``config.hook`` (which must be enabled)."""
        if config.url is None:
            raise ValueError("the hook has no url (hook.url)")
        return cls(config.url, send=config.send, vault=vault, timeout_s=config.timeout_s,
                   cache_s=config.cache_s, cache_size=config.cache_size, secret=config.secret,
                   bearer_token=config.bearer_token, default_region=config.default_region,
                   metrics=metrics)

    # -- cache -------------------------------------------------------------------------------

    def cached(self, caller: str, virtual: str, now: float | None = None) -> Match | None | Missing:
        """The cached answer: a Match (connect), None (reject) or :data:`MISSING` (ask)."""
        key = (caller, virtual)
        entry = self._cache.get(key)
        if entry is None:
            return MISSING
        if entry[0] <= (self._clock() if now is None else now):
            del self._cache[key]
            return MISSING
        self._cache.move_to_end(key)
        return entry[1]

    def _remember(self, key: _Key, answer: Match | None) -> None:
        if self.cache_s <= 0:
            return
        self._cache[key] = (self._clock() + self.cache_s, answer)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def clear(self) -> None:
        """Forget every cached answer (for example after sessions changed)."""
        self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

    # -- lookups -----------------------------------------------------------------------------

    async def resolve(self, caller: str, virtual: str) -> Match | None:
        """Where to send a call from *caller* (E.164) to *virtual*: a Match, or None to reject.

        Never raises for hook failures (they reject); a cancelled caller does not cancel a
        request that other callers share.
        """
        hit = self.cached(caller, virtual)
        if hit is not MISSING:
            return hit
        if self._closed:
            return None
        key = (caller, virtual)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._lookup(key))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        else:
            self._coalesced.inc()
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and current is not None and not current.cancelling():
                return None  # close() cancelled the request, not our caller
            raise

    def _forget(self, key: _Key, task: asyncio.Task[Match | None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    async def _lookup(self, key: _Key) -> Match | None:
        caller, virtual = key
        request_id = self._request_id()
        started = self._clock()
        try:
            answer = await self._ask(caller, virtual, request_id)
        except _Failure as failure:
            self._requests.labels(outcome=failure.outcome).inc()
            log.warning("hook.failed", reason=failure.outcome, request_id=request_id,
                        caller_token=self._token(caller), **failure.fields)
            return None
        finally:
            self._seconds.observe(self._clock() - started)
        self._requests.labels(outcome="reject" if answer is None else "connect").inc()
        log.debug("hook.answered", request_id=request_id, caller_token=self._token(caller),
                  action="reject" if answer is None else "connect")
        self._remember(key, answer)
        return answer

    def _token(self, number: str) -> str | None:
        return self._vault.token(number) if self._vault is not None else None

    def _request(self, caller: str, virtual: str, request_id: str) -> tuple[bytes, dict[str, str]]:
        shown = caller if self.send == "numbers" else self._token(caller)
        body = json.dumps({"caller": shown, "virtual": virtual, "request_id": request_id,
                           "send": self.send}, separators=(",", ":")).encode()
        timestamp = str(int(self._wall_clock()))
        headers = {"Content-Type": "application/json", REQUEST_ID_HEADER: request_id,
                   TIMESTAMP_HEADER: timestamp}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        if self._bearer is not None:
            headers["Authorization"] = f"Bearer {self._bearer}"
        return body, headers

    async def _ask(self, caller: str, virtual: str, request_id: str) -> Match | None:
        body, headers = self._request(caller, virtual, request_id)
        try:
            async with self._client().post(self.url, data=body, headers=headers,
                                           allow_redirects=False) as resp:
                if not 200 <= resp.status < 300:
                    raise _Failure("http_error", status=resp.status)
                raw = await resp.content.read(_MAX_BODY + 1)
        except TimeoutError:  # aiohttp's timeouts are TimeoutError subclasses
            raise _Failure("timeout") from None
        except (aiohttp.ClientError, OSError) as exc:
            # Only the class name: messages carry addresses and are not ours to vet.
            raise _Failure("network_error", error=type(exc).__name__) from None
        if len(raw) > _MAX_BODY:
            raise _Failure("bad_json", problem="body too large")
        return self._parse(raw, virtual)

    def _parse(self, raw: bytes, virtual: str) -> Match | None:
        try:
            answer = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _Failure("bad_json", problem="not JSON") from None
        if not isinstance(answer, dict):
            raise _Failure("bad_json", problem="not a JSON object")
        action = answer.get("action")
        if action == "reject":
            return None
        if action != "connect":
            raise _Failure("bad_answer", problem='action is not "connect" or "reject"')
        callee = self._number(answer.get("number"), "number")
        present = answer.get("present")
        shown = virtual if present is None else self._number(present, "present")
        return Match(session_id=HOOK_SESSION_ID, callee=callee, present=shown)

    def _number(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise _Failure("bad_answer", problem=f"{field} is not a string")
        try:
            return normalize_number(value, self._region)
        except InvalidNumber:
            raise _Failure("bad_answer", problem=f"{field} is not an E.164 number") from None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"User-Agent": "sipmask-hook"},
            )
        return self._session

    async def close(self) -> None:
        """Cancel lookups in flight (their callers get None) and close the HTTP session."""
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
