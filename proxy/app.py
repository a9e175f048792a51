"""Wires config -> transports -> transaction layer -> B2BUA -> pairing store; lifecycle and signals."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import structlog

from .b2bua import B2bua
from .b2bua.policy import RulesError, load_rules
from .config import Config, ConfigError
from .integrations import LookupHook, WebhookSink
from .media import MediaBridge
from .observability.logging import configure_logging
from .observability.redaction import Redactor
from .pairing.cache import PairingCache
from .pairing.crypto import load_vault
from .pairing.service import PairingService
from .pairing.stores import DialogStore, open_store
from .preflight import bind_problem
from .sip.ids import SecretIds
from .sip.transaction import TimerConfig, TransactionLayer
from .transport import SipTransports
from .transport.pike import SourceLimits
from .transport.stack import SipStack

#: CDRs and session activity are written in one batch per interval. 1 s rather than 0.2 s:
#: under sustained load the store thread's per-batch work (one transaction each for touches
#: and CDRs, and the GIL hand-offs) was a quarter of sipmask's CPU (docs/benchmarks.md);
#: session expiry flushes first, so inactivity deadlines always see the latest activity
_CDR_FLUSH_S = 1.0


@dataclass
class App:
    """A running sipmask: everything `sipmask run` starts, kept for shutdown and tests."""

    config: Config
    log: Any
    service: PairingService
    transports: SipTransports
    stack: SipStack
    b2bua: B2bua
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    store_worker: ThreadPoolExecutor | None = None
    api: Any = None  # proxy.api.ApiServer when [api] is enabled
    closers: list[Any] = field(default_factory=list)  # async close() of hook, webhooks, media
    keeper: Any = None  # proxy.cluster.DialogKeeper with cluster.persist_dialogs
    media: MediaBridge | None = None  # [media] mode = "rtpengine"

    def reload_rules(self) -> None:
        """SIGHUP: re-read the header policy; a bad file keeps the old policy and says why."""
        try:
            rules = load_rules(self.config.rules_file)
        except RulesError as exc:
            self.log.error("rules.reload_failed", error=str(exc))
            return
        self.b2bua.set_rules(rules)
        self.log.info("rules.reloaded", file=str(self.config.rules_file))

    async def drain(self, again: asyncio.Event | None = None) -> None:
        """SIGTERM: new calls get 503 while established ones go on, up to
        ``cluster.drain_timeout_s`` (``again`` set, a second signal, cuts it short); then what
        is left is handed over (``cluster.persist_dialogs``) or ended with BYE."""
        b2bua = self.b2bua
        b2bua.draining = True
        loop = asyncio.get_running_loop()
        timeout = self.config.cluster.drain_timeout_s
        self.log.info("sipmask.draining", active_calls=b2bua.active_calls, timeout_s=timeout)
        deadline = loop.time() + timeout
        # polls a count the sans-IO B2BUA keeps (no event to wait on)
        while b2bua.active_calls and loop.time() < deadline and not (again and again.is_set()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        if self.keeper is not None:
            handed = await self.keeper.hand_over()
            self.log.info("sipmask.drained", handed_over=handed, worker=self.keeper.worker)
            return
        ended = 0
        for call in list(b2bua.calls.values()):
            b2bua.hangup(call, "shutdown", loop.time())
            ended += 1
        self.stack.flush()
        if ended:
            await asyncio.sleep(0.5)  # the BYEs' first retransmissions (T1) before the sockets close
        self.log.info("sipmask.drained", ended=ended)

    async def close(self) -> None:
        """Stop the API, timers and listeners, flush CDRs, close the store."""
        if self.api is not None:
            await self.api.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self.stack.close()
        await self.transports.close()
        for closer in self.closers:
            try:
                await closer()
            except Exception:
                self.log.exception("app.close_failed")
        if self.store_worker is not None:
            self.store_worker.shutdown(wait=True)  # a write in flight lands before the last flush
        self.service.flush()
        self.service.store.close()


class _HookAdapter:
    """The lookup hook (asyncio) as the sans-IO B2BUA's ``unknown_lookup``."""

    def __init__(self, hook: LookupHook, loop: asyncio.AbstractEventLoop, stack: SipStack, log: Any) -> None:
        self.hook = hook
        self.loop = loop
        self.stack = stack
        self.log = log
        self.tasks: set[asyncio.Task[Any]] = set()

    def cached(self, caller: str, dialed: str) -> object:
        return self.hook.cached(caller, dialed)

    def ask(self, caller: str, dialed: str, done: Any) -> None:
        task = self.loop.create_task(self.hook.resolve(caller, dialed))
        self.tasks.add(task)

        def finished(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            match = None
            if not t.cancelled() and t.exception() is None:
                match = t.result()
            try:
                done(match, self.loop.time())
            except Exception:
                self.log.exception("hook.resume_failed")
            self.stack.flush()

        task.add_done_callback(finished)


async def start(config: Config) -> App:
    """Start sipmask on the running loop and return the handle."""
    loop = asyncio.get_running_loop()
    vault = load_vault(config.store.key_file)
    configure_logging(config.log.level, config.log.format, redactor=Redactor(vault.token_key))
    log = structlog.get_logger("sipmask")
    store = open_store(
        config.store.backend, vault, path=config.store.path,
        redis_url=config.store.redis_url, redis_prefix=config.store.redis_prefix,
    )
    service = PairingService(store, PairingCache(), time.time)
    loaded = service.start()
    rules = load_rules(config.rules_file)

    sip = config.sip
    layer = TransactionLayer(TimerConfig(sip.t1, sip.t2, sip.t4), SecretIds(os.urandom))
    stack_box: list[SipStack] = []

    def on_message(message: Any, source: Any, delay: float = 0.0) -> None:
        stack_box[0].on_message(message, source, delay)

    def on_send_error(dest: Any) -> None:
        stack_box[0].on_send_error(dest)

    tls_server = tls_client = None
    if any(ls.transport == "tls" for ls in sip.listen):
        from .transport import make_client_context, make_server_context

        assert sip.tls_cert and sip.tls_key
        tls_server = make_server_context(sip.tls_cert, sip.tls_key, sip.tls_ca)
        tls_client = make_client_context(sip.tls_ca, verify=sip.tls_ca is not None)
    transports = SipTransports(
        on_message,
        max_message_size=sip.max_message_size,
        tcp_idle_timeout=sip.tcp_idle_timeout_s,
        tcp_message_timeout=sip.tcp_message_timeout_s,
        tcp_max_connections=sip.tcp_max_connections or None,
        tcp_max_per_source=sip.tcp_max_connections_per_source,
        tls_server_context=tls_server,
        tls_client_context=tls_client,
        on_send_error=on_send_error,
    )
    limits = SourceLimits(sip.source_rate, sip.source_burst, sip.trusted_sources) if sip.source_rate else None
    stack = SipStack(layer, transports.send, loop, trace=config.log.level.lower() == "debug",
                     source_limits=limits)
    stack_box.append(stack)
    transports.on_message = stack.on_message  # straight to the stack: no trampoline per message
    transports.on_datagram = stack.on_datagram  # UDP: written after each read batch
    transports.on_batch_end = stack.end_batch
    bound: dict[str, tuple[str, int]] = {}
    for i, spec in enumerate(sip.listen):
        try:
            host, port = await transports.listen(spec.transport, spec.host, spec.port)
        except OSError as exc:  # taken since the preflight checks (proxy/preflight.py)
            await transports.close()
            store.close()
            raise ConfigError(str(config.source) if config.source else None, f"sip.listen[{i}]",
                              bind_problem(str(spec), exc, port_key="sip.listen")) from None
        bound.setdefault(spec.transport, (host, port))
        log.info("sip.listening", transport=spec.transport, host=host, port=port)

    advertise = sip.advertise_host

    def local_address(transport: str) -> tuple[str, int]:
        host, port = bound.get(transport) or next(iter(bound.values()))
        host = advertise or host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return host, port

    offset = time.time() - loop.time()
    hook_adapter: _HookAdapter | None = None
    closers: list[Any] = []
    if config.calls.unknown_policy == "hook" and config.hook.url:
        hook = LookupHook.from_config(config.hook, vault)
        hook_adapter = _HookAdapter(hook, loop, stack, log)
        closers.append(hook.close)
    sink: WebhookSink | None = None
    if config.webhooks:
        sink = WebhookSink(config.webhooks, vault=vault)
        await sink.start()
        closers.append(sink.close)
    media: MediaBridge | None = None
    if config.media.enabled:
        media = MediaBridge.from_config(config.media, flush=stack.flush)
        closers.append(media.close)
    b2bua = B2bua(
        layer=layer,
        config=config,
        rules=rules,
        pairings=service,
        ids=layer.ids if hasattr(layer, "ids") else SecretIds(os.urandom),
        local_address=local_address,
        tokenize=vault.token,
        log=log,
        wall_clock=lambda now: now + offset,
        unknown_lookup=hook_adapter,
        events=sink.emit if sink is not None else None,
        media=media,
    )
    stack.attach(b2bua)
    if config.calls.overload_busy:  # off by default: no clock reads per message then
        stack.on_busy = b2bua.admission.record_busy
    app = App(config, log, service, transports, stack, b2bua)
    app.media = media
    app.closers.extend(closers)
    # Store calls run in one worker thread (serialised, in order); the cache stays on the loop.
    app.store_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sipmask-store")
    worker = app.store_worker

    def run(fn: Any, *args: Any) -> Any:
        return loop.run_in_executor(worker, fn, *args)

    if config.cluster.persist_dialogs:
        from .cluster import DialogKeeper, worker_name

        keeper = DialogKeeper(config, worker_name(config), cast(DialogStore, store), vault, b2bua,
                              stack, run, log, loop)
        try:
            await keeper.start()
        except Exception as exc:  # noqa: BLE001 - calls of a previous run are lost, new ones work
            log.error("cluster.start_failed", error=type(exc).__name__)
        app.keeper = keeper
    housekeeping: list[tuple[str, float, Any]] = [
        ("poll", config.store.poll_interval_s, lambda: service.poll_async(run)),
        ("flush", _CDR_FLUSH_S, lambda: service.flush_async(run)),
        ("expire", 5.0, lambda: _expire(service, run, sink)),
    ]
    if config.store.retention_days > 0:
        retention_s = config.store.retention_days * 86_400.0

        async def purge() -> None:
            sessions, cdrs = await service.purge_async(run, retention_s)
            if sessions or cdrs:
                log.info("store.purged", sessions=sessions, cdrs=cdrs)

        housekeeping.append(("purge", config.store.purge_interval_s, purge))
    if app.keeper is not None:
        housekeeping.extend(app.keeper.tasks())
    for name, interval, job in housekeeping:
        app.tasks.append(asyncio.create_task(_every_async(name, interval, job, log)))
    if config.api.enabled:
        from .api import start_api  # aiohttp is imported only when the API runs

        def sip_ready() -> bool:
            return bool(bound) and not app.stopping.is_set()

        try:
            app.api = await start_api(config.api, store=store, vault=vault, service=service,
                                      call=run, sip_ready=sip_ready, log=log,
                                      sip_stats=lambda: _sip_stats(app))
        except OSError as exc:
            await app.close()
            raise ConfigError(str(config.source) if config.source else None, "api.listen",
                              bind_problem(config.api.listen, exc, port_key="api.listen")) from None
    _tune_gc()
    app.tasks.append(asyncio.create_task(_gc_clock()))
    log.info("sipmask.started", pairings=loaded, store=config.store.backend,
             config=str(config.source) if config.source else "built-in defaults",
             db=config.store.path if config.store.backend == "sqlite" else None)
    return app


def _sip_stats(app: App) -> dict[str, dict[str, float]]:
    """The SIP side's running figures for ``/metrics`` (proxy/api/server.py ``SIP_METRICS``)."""
    b2bua = app.b2bua
    layer = app.stack.layer
    limits = app.stack.source_limits
    admission = b2bua.admission
    stats = app.transports.stats
    return {
        "sipmask_calls_active": {"": b2bua.active_calls},
        "sipmask_sip_events_total": dict(b2bua.counters),
        "sipmask_overload_refusals_total": {
            "queue_delay": admission.stale, "other": admission.refused - admission.stale,
        },
        "sipmask_sip_messages_total": {
            kind: getattr(stats, kind) for kind in (
                "received", "sent", "parse_errors", "bad_requests_answered", "dropped",
                "send_errors", "keepalives")
        },
        "sipmask_sip_transactions": dict(layer.counts),
        "sipmask_sip_request_retransmissions_total": {"": layer.request_retransmissions},
        "sipmask_tcp_connections": {"": stats.tcp_connections_open},
        "sipmask_tcp_connections_refused_total": {"": stats.tcp_connections_refused},
        "sipmask_tcp_message_timeouts_total": {"": stats.tcp_message_timeouts},
        "sipmask_store_resyncs_total": {"": app.service.resyncs},
        "sipmask_sip_source_limited_total": {
            "invite_503": limits.refused_invites if limits else 0,
            "dropped": limits.dropped if limits else 0,
        },
        "sipmask_cluster_dialogs_total": {} if app.keeper is None else {
            kind: getattr(app.keeper, kind) for kind in ("written", "reloaded", "claimed", "write_errors")
        },
        **_media_stats(app.media),
    }


def _media_stats(media: MediaBridge | None) -> dict[str, dict[str, float]]:
    """The media relay's figures (empty without one)."""
    if media is None:
        return {}
    counts = media.client.counts
    return {
        "sipmask_media_sessions": {"": media.sessions},
        "sipmask_media_ng_requests_total": dict(media.client.commands),
        "sipmask_media_ng_failures_total": {
            kind: counts[kind] for kind in ("errors", "timeouts", "refused", "unavailable")},
    }


async def _expire(service: PairingService, run: Any, sink: WebhookSink | None) -> None:
    """Expire sessions past their deadline; tell the webhooks (``session.expired``)."""
    expired = await service.expire_async(run)
    if sink is not None:
        at = time.time()
        for session_id in expired:
            sink.emit("session.expired", {"session_id": session_id, "expired_at": at})


def _tune_gc() -> None:
    """Calls are freed by reference counting (no cycles: tests/unit/test_b2bua.py), so the
    cyclic GC finds almost nothing; what it costs is its pauses, which grow with the objects
    it walks, and a call's transactions stay alive 32 s after it (RFC 6026 Timers L/M/J).
    Freeze what start-up allocated (config, rules, the pairing cache: never garbage); collect
    young objects often enough that no pass walks more than ~40k of them (a few tens of ms)
    instead of up to a million (a 1.1 s pause at 1,000 calls/s with the old 50,000/20/100,
    which made peers retransmit); keep full passes, which walk everything alive, rare: they
    only sweep cycles made outside the call path. Every pass of the clock (five a second)
    counts toward the third threshold: 50,000 keeps a full pass out of the first ~2.8 hours,
    and after that it waits for a burst to trigger an automatic collection. Measured in
    docs/benchmarks.md."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 2, 50_000)


#: the young and middle generations are collected together on a clock (see ``_gc_clock``)
_GC_PERIOD_S = 0.2


async def _gc_clock(sleep: Any = asyncio.sleep, collect: Any = gc.collect) -> None:
    """Collect the young and middle generations together every 200 ms.

    CPython starts a young collection when allocations minus deallocations of tracked
    objects pass the threshold. Under steady load, 32 s after it starts, the transactions
    of calls that ended 32 s ago are freed as fast as new ones are made: the count stops
    rising, collections become rare, and the young generation they walk grows to everything
    made since the last one: pauses of ~1 s every ~33 s at 720 calls/s, each ending in a
    burst of 503s from the queue-delay gate (docs/benchmarks.md). On a clock each pass walks
    what 200 ms of traffic left alive, whatever the balance. One pass over both generations
    (``collect(1)``) walks each surviving object once, where a young pass every 100 ms and a
    middle one every second walked it twice (the GC's share of CPU halved, measured)."""
    while True:
        await sleep(_GC_PERIOD_S)
        collect(1)


async def _every_async(name: str, interval: float, job: Any, log: Any) -> None:
    """Await `job()` every `interval` seconds (after the previous run ended)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await job()
        except Exception as exc:  # noqa: BLE001 - housekeeping must not die
            log.error("housekeeping.failed", task=name, error=type(exc).__name__)


async def serve(config: Config) -> None:
    """Run until SIGINT/SIGTERM; SIGHUP reloads the header policy."""
    app = await start(config)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, app.reload_rules)
    again = asyncio.Event()

    def on_stop() -> None:
        if app.stopping.is_set():
            again.set()  # a second signal: stop draining now
        app.stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_stop)
    await app.stopping.wait()
    app.log.info("sipmask.stopping", active_calls=app.b2bua.active_calls)
    try:
        await app.drain(again)
    except Exception as exc:  # noqa: BLE001 - stopping must finish
        app.log.error("sipmask.drain_failed", error=type(exc).__name__)
    await app.close()
