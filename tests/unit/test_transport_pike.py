"""Per-source rate limits (proxy/transport/pike.py) and the transaction layer's hook, with a
fake clock: buckets, the LRU bound, trusted networks, what is refused and what never is."""

from __future__ import annotations

import ipaddress

import pytest

from proxy.sip.message import Request, Response, build_response
from proxy.sip.transaction import Address, RequestReceived, TransactionLayer
from proxy.transport.pike import REPORT_INTERVAL_S, SourceLimits

from .test_sip_transaction_support import make_layer, make_request

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
FLOOD = Address("udp", "192.0.2.7", 5060)
GOOD = Address("udp", "192.0.2.8", 5060)


def test_bucket_allows_a_burst_then_the_rate() -> None:
    limits = SourceLimits(rate=10.0, burst=5.0)
    assert [limits.check("192.0.2.7", 0.0, True) for _ in range(6)] == [0, 0, 0, 0, 0, 1]
    assert limits.refused_invites == 1 and limits.dropped == 0
    assert limits.check("192.0.2.7", 0.05, False) == 1  # half a token: still refused, dropped
    assert limits.dropped == 1
    assert limits.check("192.0.2.7", 0.1, True) == 0  # 0.1 s at 10/s refilled one token
    assert limits.check("192.0.2.7", 0.1, True) == 1
    # a second later the bucket is full again, never above its size
    assert [limits.check("192.0.2.7", 10.0, True) for _ in range(6)] == [0, 0, 0, 0, 0, 1]


def test_retry_after_is_the_wait_for_a_token_in_whole_seconds() -> None:
    limits = SourceLimits(rate=0.25, burst=1.0)
    assert limits.check("192.0.2.7", 0.0, True) == 0
    assert limits.check("192.0.2.7", 0.0, True) == 4  # one token every 4 s
    assert limits.check("192.0.2.7", 3.0, True) == 1


def test_each_source_has_its_own_bucket() -> None:
    limits = SourceLimits(rate=1.0, burst=2.0)
    assert [limits.check("192.0.2.7", 0.0, True) for _ in range(3)] == [0, 0, 1]
    assert [limits.check("192.0.2.8", 0.0, True) for _ in range(2)] == [0, 0]


def test_trusted_networks_are_never_limited() -> None:
    limits = SourceLimits(rate=1.0, burst=1.0, trusted=(ipaddress.ip_network("203.0.113.0/24"),
                                                        ipaddress.ip_network("2001:db8::/32")))
    assert all(limits.check("203.0.113.9", 0.0, True) == 0 for _ in range(1000))
    assert all(limits.check("[2001:db8::5]", 0.0, True) == 0 for _ in range(10))
    assert limits.sources == 0  # a trusted source takes no bucket
    assert [limits.check("203.0.114.1", 0.0, True) for _ in range(2)] == [0, 1]
    assert limits.check("not-an-ip", 0.0, False) == 0 and limits.check("not-an-ip", 0.0, False) == 1


def test_memory_is_bounded_and_the_least_recently_used_is_forgotten() -> None:
    limits = SourceLimits(rate=1.0, burst=1.0, max_sources=3)
    for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        assert limits.check(host, 0.0, True) == 0
    assert limits.check("10.0.0.1", 0.0, True) == 1  # 10.0.0.1 is now the most recent
    assert limits.check("10.0.0.4", 0.0, True) == 0  # evicts 10.0.0.2, the least recent
    assert limits.sources == 3
    assert limits.check("10.0.0.1", 0.0, True) == 1  # kept: still out of tokens
    assert limits.check("10.0.0.2", 0.0, True) == 0  # forgotten: back with a full bucket
    for i in range(1000):
        limits.check(f"10.1.{i // 256}.{i % 256}", 0.0, True)
    assert limits.sources == 3


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        SourceLimits(rate=0.0, burst=1.0)
    with pytest.raises(ValueError):
        SourceLimits(rate=1.0, burst=0.5)


def test_the_worst_source_is_logged_at_once_then_once_an_interval(
        monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[dict[str, object]] = []

    class Log:
        def warning(self, event: str, **kw: object) -> None:
            lines.append({"event": event, **kw})

    monkeypatch.setattr("proxy.transport.pike._log", Log())
    limits = SourceLimits(rate=1.0, burst=1.0)
    limits.check("10.0.0.1", 0.0, True)
    limits.check("10.0.0.2", 0.0, True)
    for t in range(30):
        limits.check("10.0.0.1", t * 0.001, True)  # 30 refusals of .1
    limits.check("10.0.0.2", 0.0, True)
    limits.check("10.0.0.2", 0.0, True)
    assert [line["source"] for line in lines] == ["10.0.0.1"]  # the first refusal, at once
    limits.check("10.0.0.1", REPORT_INTERVAL_S + 0.1, True)
    limits.check("10.0.0.1", REPORT_INTERVAL_S + 0.1, True)
    assert len(lines) == 2
    assert lines[1]["source"] == "10.0.0.1" and lines[1]["refused"] == 31 and lines[1]["sources"] == 2


# ------------------------------------------------------------------- the transaction layer's hook


def _layer(rate: float = 1.0, burst: float = 2.0) -> tuple[TransactionLayer, SourceLimits]:
    layer = make_layer()
    limits = SourceLimits(rate, burst)
    layer.source_limit = limits.check
    return layer, limits


def _invite(n: int, **kw: object) -> Request:
    return make_request(branch=f"z9hG4bK-f{n}", call_id=f"flood-{n}", **kw)  # type: ignore[arg-type]


def test_over_the_limit_a_new_invite_gets_503_with_retry_after_statelessly() -> None:
    layer, limits = _layer()
    for n in range(2):
        (event,) = layer.receive(_invite(n), FLOOD, 0.0)
        assert isinstance(event, RequestReceived)
    layer.take_outgoing()
    assert layer.receive(_invite(2), FLOOD, 0.0) == []
    (sent,) = layer.take_outgoing()
    assert isinstance(sent.message, Response) and sent.message.status == 503
    assert sent.message.headers.get("retry-after") == "1"
    assert sent.message.to_tag == layer.stateless_tag and sent.dest == FLOOD
    assert layer.counts["server_invite"] == 2  # no transaction for the refused one
    assert limits.refused_invites == 1
    # its ACK is absorbed by the stateless tag, never asked about
    ack = make_request("ACK", branch="z9hG4bK-f2", call_id="flood-2", to_tag=layer.stateless_tag)
    assert layer.receive(ack, FLOOD, 0.0) == [] and limits.dropped == 0
    # another source is not affected
    (event,) = layer.receive(_invite(9), GOOD, 0.0)
    assert isinstance(event, RequestReceived)


def test_over_the_limit_other_requests_are_dropped_silently() -> None:
    layer, limits = _layer(burst=1.0)
    assert layer.receive(make_request("OPTIONS", branch="z9hG4bK-o1"), FLOOD, 0.0)
    layer.take_outgoing()
    assert layer.receive(make_request("OPTIONS", branch="z9hG4bK-o2"), FLOOD, 0.0) == []
    bye = make_request("BYE", branch="z9hG4bK-o3", to_tag="t1")
    assert layer.receive(bye, FLOOD, 0.1) == []
    reinvite = make_request(branch="z9hG4bK-o4", to_tag="t1")
    assert layer.receive(reinvite, FLOOD, 0.2) == []
    assert layer.take_outgoing() == [] and limits.dropped == 3 and limits.refused_invites == 0
    assert layer.counts["server_non_invite"] == 1


def test_retransmissions_of_a_transaction_in_progress_are_never_charged_nor_refused() -> None:
    layer, limits = _layer(burst=1.0)
    (event,) = layer.receive(_invite(0), FLOOD, 0.0)
    assert isinstance(event, RequestReceived) and event.transaction is not None
    layer.send_response(event.transaction, build_response(event.request, 180, to_tag="u1"), 0.0)
    layer.take_outgoing()
    for i in range(50):  # the caller retransmits its INVITE: re-answered, never limited
        assert layer.receive(_invite(0), FLOOD, 0.001 * i) == []
        assert [s.message.status for s in layer.take_outgoing()] == [180]  # type: ignore[union-attr]
    assert limits.refused_invites == 0 and limits.dropped == 0
    assert layer.request_retransmissions == 50


def test_the_stack_installs_the_limit_on_the_layer() -> None:
    import asyncio

    from proxy.transport.stack import SipStack

    loop = asyncio.new_event_loop()
    try:
        layer = make_layer()
        limits = SourceLimits(1.0, 1.0)
        stack = SipStack(layer, lambda m, d: None, loop, source_limits=limits)
        assert stack.source_limits is limits and layer.source_limit == limits.check
        bare = make_layer()
        SipStack(bare, lambda m, d: None, loop)
        assert bare.source_limit is None
    finally:
        loop.close()
