"""Event webhooks: signed JSON POSTs of call and session events, retried in the background.

The B2BUA calls :meth:`WebhookSink.emit`, which never blocks and never raises for delivery
problems: the event is serialised at once and put on each subscribed endpoint's bounded queue
(a full queue drops the event, counted). Worker tasks POST it with ``X-Sipmask-Event``,
``X-Sipmask-Delivery`` (the event id, the same on every retry, so receivers can de-duplicate),
``X-Sipmask-Timestamp`` and ``X-Sipmask-Signature`` (see :mod:`.signing`). Network errors,
timeouts, 5xx and 429 are retried with exponential backoff and jitter (``Retry-After`` is
honoured up to the backoff cap) until ``max_attempts``; other statuses give up at once.

Real numbers never go into a payload given to ``emit``: pass them separately as ``numbers``
(``{"caller": "+1555..."}``). Every endpoint gets ``caller_token``; only an endpoint configured
with ``include_numbers`` also gets ``caller``. A string in the payload that still looks like a
phone number is replaced by a token (or ``"[redacted]"``) and logged, as a last guard.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import aiohttp

from ..observability.logging import get_logger
from ..observability.metrics import Metrics
from ..observability.redaction import contains_phone_number
from ..pairing.model import cdr_payload  # re-exported: the call.ended payload of a CDR
from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

__all__ = ["EVENT_TYPES", "EndpointSpec", "WebhookSink", "cdr_payload"]

EVENT_TYPES: Final = ("call.started", "call.answered", "call.ended", "session.expired")
EVENT_HEADER: Final = "X-Sipmask-Event"
DELIVERY_HEADER: Final = "X-Sipmask-Delivery"
_REDACTED: Final = "[redacted]"

log = get_logger(__name__)


class EndpointSpec(Protocol):
    """What the sink needs of an endpoint (``proxy.config.WebhookConfig`` fits)."""

    @property
    def url(self) -> str: ...
    @property
    def secret(self) -> str | None: ...
    @property
    def max_attempts(self) -> int: ...
    @property
    def include_numbers(self) -> bool: ...
    @property
    def timeout_s(self) -> float: ...
    def wants(self, event_type: str) -> bool: ...


class Tokenizer(Protocol):
    """``NumberVault`` fits: ``token(number) -> "n_..."``."""

    def token(self, number: str) -> str: ...


@dataclass(frozen=True, slots=True)
class _Delivery:
    event_id: str
    event_type: str
    body: bytes


class _Endpoint:
    def __init__(self, index: int, spec: EndpointSpec, queue_size: int) -> None:
        self.label = str(index)
        self.spec = spec
        self.queue: asyncio.Queue[_Delivery] = asyncio.Queue(queue_size)
        self.workers: list[asyncio.Task[None]] = []


class WebhookSink:
    """Delivers events to the configured endpoints; one per process, on one event loop."""

    def __init__(
        self,
        endpoints: Sequence[EndpointSpec],
        *,
        vault: Tokenizer | None = None,
        metrics: Metrics | None = None,
        queue_size: int = 1000,
        workers: int = 4,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        event_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        if queue_size < 1 or workers < 1 or backoff_s < 0 or backoff_max_s < backoff_s:
            raise ValueError("queue_size and workers must be >= 1, 0 <= backoff_s <= backoff_max_s")
        self._endpoints = [_Endpoint(i, spec, queue_size) for i, spec in enumerate(endpoints)]
        self._vault = vault
        self._workers = workers
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._event_id = event_id
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self.metrics = metrics if metrics is not None else Metrics()
        self._events = self.metrics.counter(
            "sipmask_webhook_events_total", "Events queued or dropped per endpoint.",
            ["endpoint", "result"])
        self._deliveries = self.metrics.counter(
            "sipmask_webhook_deliveries_total",
            "Delivery attempts per endpoint: delivered, retried, failed (gave up), abandoned"
            " (still queued at shutdown).", ["endpoint", "result"])
        self.counts: dict[str, int] = dict.fromkeys(
            ("queued", "dropped", "delivered", "retried", "failed", "abandoned"), 0)
        """Totals over all endpoints (the metrics have them per endpoint)."""

    @property
    def enabled(self) -> bool:
        """Whether any endpoint is configured."""
        return bool(self._endpoints)

    # -- producing ---------------------------------------------------------------------------

    def emit(self, event_type: str, payload: Mapping[str, Any], *,
             numbers: Mapping[str, str] | None = None) -> bool:
        """Queue *event_type* with *payload* (JSON-able) for every subscribed endpoint.

        *numbers* maps field names to real numbers: each becomes ``<name>_token``, and the
        number itself only for endpoints with ``include_numbers``. Returns False when some
        endpoint's queue was full (or the sink is closing) and the event was dropped there.

        Raises:
            ValueError: an unknown event type (a programming error).
        """
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {event_type!r}; expected one of {EVENT_TYPES}")
        targets = [ep for ep in self._endpoints if ep.spec.wants(event_type)]
        if not targets:
            return True
        event_id = self._event_id()
        data = {key: self._guard(key, value) for key, value in payload.items()}
        clear: dict[str, str] = {}
        for name, number in (numbers or {}).items():
            data[f"{name}_token"] = self._token(number)
            clear[name] = number
        envelope = {"id": event_id, "type": event_type, "created_at": self._clock(), "data": data}
        bodies: dict[bool, bytes] = {}
        ok = True
        for ep in targets:
            with_numbers = ep.spec.include_numbers and bool(clear)
            body = bodies.get(with_numbers)
            if body is None:
                shown = {**envelope, "data": {**data, **clear}} if with_numbers else envelope
                body = bodies[with_numbers] = json.dumps(shown, separators=(",", ":"),
                                                         default=str).encode()
            ok &= self._enqueue(ep, _Delivery(event_id, event_type, body))
        return ok

    def _enqueue(self, ep: _Endpoint, delivery: _Delivery) -> bool:
        if not self._closing:
            try:
                ep.queue.put_nowait(delivery)
            except asyncio.QueueFull:
                pass
            else:
                self.counts["queued"] += 1
                self._events.labels(endpoint=ep.label, result="queued").inc()
                return True
        self.counts["dropped"] += 1
        self._events.labels(endpoint=ep.label, result="dropped").inc()
        log.debug("webhook.dropped", endpoint=ep.label, event_type=delivery.event_type,
                  delivery=delivery.event_id, closing=self._closing)
        return False

    def _token(self, number: str) -> str:
        return self._vault.token(number) if self._vault is not None else _REDACTED

    def _guard(self, key: str, value: Any) -> Any:
        """Replace strings that look like phone numbers: payloads must carry tokens only."""
        if isinstance(value, str):
            if contains_phone_number(value):
                log.warning("webhook.payload_redacted", field=key)
                return self._token(value) if self._vault is not None else _REDACTED
            return value
        if isinstance(value, Mapping):
            return {k: self._guard(f"{key}.{k}", v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._guard(key, v) for v in value]
        return value

    # -- delivering --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the HTTP session and start the workers (events emitted earlier are sent)."""
        if self._session is not None or not self._endpoints:
            return
        self._session = aiohttp.ClientSession(headers={"User-Agent": "sipmask-webhooks"})
        for ep in self._endpoints:
            ep.workers = [asyncio.create_task(self._work(ep)) for _ in range(self._workers)]

    async def _work(self, ep: _Endpoint) -> None:
        while True:
            delivery = await ep.queue.get()
            try:
                await self._deliver(ep, delivery)
            except asyncio.CancelledError:
                self._count(ep, "abandoned")  # close() gave up on it mid-retry
                raise
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the worker
                self._count(ep, "failed")
                log.error("webhook.crashed", endpoint=ep.label, error=type(exc).__name__)
            finally:
                ep.queue.task_done()

    async def _deliver(self, ep: _Endpoint, delivery: _Delivery) -> None:
        spec = ep.spec
        for attempt in range(1, spec.max_attempts + 1):
            status, retry_after, error = await self._post(ep, delivery)
            if status is not None and 200 <= status < 300:
                self._count(ep, "delivered")
                log.debug("webhook.delivered", endpoint=ep.label, event_type=delivery.event_type,
                          delivery=delivery.event_id, attempts=attempt)
                return
            retryable = status is None or status >= 500 or status == 429
            if not retryable or attempt == spec.max_attempts:
                self._count(ep, "failed")
                log.warning("webhook.failed", endpoint=ep.label, event_type=delivery.event_type,
                            delivery=delivery.event_id, attempts=attempt, status=status,
                            error=error)
                return
            self._count(ep, "retried")
            await asyncio.sleep(self._backoff(attempt, retry_after))

    async def _post(self, ep: _Endpoint, delivery: _Delivery
                    ) -> tuple[int | None, str | None, str | None]:
        """One attempt: (status, Retry-After, error class name) - status None on no answer."""
        assert self._session is not None
        timestamp = str(int(self._clock()))
        headers = {"Content-Type": "application/json", EVENT_HEADER: delivery.event_type,
                   DELIVERY_HEADER: delivery.event_id, TIMESTAMP_HEADER: timestamp}
        if ep.spec.secret is not None:
            headers[SIGNATURE_HEADER] = sign(ep.spec.secret, timestamp, delivery.body)
        try:
            async with self._session.post(
                ep.spec.url, data=delivery.body, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=ep.spec.timeout_s),
            ) as resp:
                await resp.read()
                return resp.status, resp.headers.get("Retry-After"), None
        except TimeoutError:
            return None, None, "timeout"
        except (aiohttp.ClientError, OSError) as exc:
            return None, None, type(exc).__name__

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        delay = min(self._backoff_max_s, self._backoff_s * 2.0 ** (attempt - 1))
        delay = delay / 2 + self._rng.uniform(0, delay / 2)
        if retry_after is not None and retry_after.strip().isdigit():
            delay = max(delay, min(float(retry_after), self._backoff_max_s))
        return delay

    def _count(self, ep: _Endpoint, result: str) -> None:
        self.counts[result] += 1
        self._deliveries.labels(endpoint=ep.label, result=result).inc()

    async def close(self, timeout_s: float = 5.0) -> None:
        """Stop taking events, deliver what is queued for up to *timeout_s*, then stop.

        Events still queued or being retried at the deadline are abandoned (counted, logged).
        """
        self._closing = True
        workers = [task for ep in self._endpoints for task in ep.workers]
        if workers:
            drained = asyncio.gather(*(ep.queue.join() for ep in self._endpoints))
            try:
                await asyncio.wait_for(drained, timeout_s)
            except TimeoutError:
                pass
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        for ep in self._endpoints:
            ep.workers = []
            while not ep.queue.empty():
                ep.queue.get_nowait()
                ep.queue.task_done()
                self._count(ep, "abandoned")
        if self.counts["abandoned"]:
            log.warning("webhook.abandoned", events=self.counts["abandoned"])
        if self._session is not None:
            await self._session.close()
            self._session = None
