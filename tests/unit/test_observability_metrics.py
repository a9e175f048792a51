"""Metrics registry: exposed by prometheus_client (text format 0.0.4, OpenMetrics on request)
through its collector API, and no numbers in labels."""

from __future__ import annotations

import math

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from proxy.observability import CONTENT_TYPE, Metrics


def test_render_counter_gauge_histogram() -> None:
    m = Metrics()
    calls = m.counter("sipmask_calls_total", "Calls by outcome.", ["outcome", "transport"])
    calls.labels(outcome="answered", transport="udp").inc()
    calls.labels(outcome="answered", transport="udp").inc(2)
    calls.labels("rejected", "tcp").inc()
    active = m.gauge("sipmask_calls_active", "Calls in progress.")
    active.inc(3)
    active.dec()
    setup = m.histogram("sipmask_setup_seconds", "INVITE to 200 OK.", [0.1, 1, 0.5])
    setup.observe(0.05)
    setup.observe(0.7)
    setup.observe(30)
    assert m.render() == (
        "# HELP sipmask_calls_total Calls by outcome.\n"
        "# TYPE sipmask_calls_total counter\n"
        'sipmask_calls_total{outcome="answered",transport="udp"} 3.0\n'
        'sipmask_calls_total{outcome="rejected",transport="tcp"} 1.0\n'
        "# HELP sipmask_calls_active Calls in progress.\n"
        "# TYPE sipmask_calls_active gauge\n"
        "sipmask_calls_active 2.0\n"
        "# HELP sipmask_setup_seconds INVITE to 200 OK.\n"
        "# TYPE sipmask_setup_seconds histogram\n"
        'sipmask_setup_seconds_bucket{le="0.1"} 1.0\n'
        'sipmask_setup_seconds_bucket{le="0.5"} 1.0\n'
        'sipmask_setup_seconds_bucket{le="1.0"} 2.0\n'
        'sipmask_setup_seconds_bucket{le="+Inf"} 3.0\n'
        "sipmask_setup_seconds_count 3.0\n"
        "sipmask_setup_seconds_sum 30.75\n"
    )
    assert m.render() == generate_latest(m.registry).decode()  # the library writes it
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_labelled_histogram_and_escaping() -> None:
    m = Metrics()
    h = m.histogram("lat", 'Help with \\ and\nnewline.', [1.0], labelnames=["peer"])
    h.labels(peer='a"b\\c').observe(2)
    g = m.gauge("g", "G.")
    g.set(math.inf)
    text = m.render()
    assert "# HELP lat Help with \\\\ and\\nnewline.\n" in text
    assert 'lat_bucket{le="1.0",peer="a\\"b\\\\c"} 0.0\n' in text
    assert 'lat_bucket{le="+Inf",peer="a\\"b\\\\c"} 1.0\n' in text
    assert 'lat_count{peer="a\\"b\\\\c"} 1.0\n' in text
    assert "g +Inf\n" in text


@pytest.mark.parametrize(
    "value", ["+15551230001", "555-123-0001", "sip:alice@example.com", "tel:+441234567890"]
)
def test_phone_number_label_rejected(value: str) -> None:
    c = Metrics().counter("c_total", "C.", ["peer"])
    with pytest.raises(ValueError, match="phone number"):
        c.labels(peer=value)


def test_ordinary_labels_accepted() -> None:
    c = Metrics().counter("c_total", "C.", ["code", "peer"])
    for code, peer in [("404", "carrier-a"), ("503", "10.0.0.1:5060"), ("200", "udp")]:
        c.labels(code=code, peer=peer).inc()


def test_misuse_is_rejected() -> None:
    m = Metrics()
    c = m.counter("c_total", "C.", ["a"])
    with pytest.raises(ValueError):
        m.counter("c_total", "again")
    with pytest.raises(ValueError):
        c.labels(b="x")
    with pytest.raises(ValueError):
        c.inc()  # labelled metric used without labels
    with pytest.raises(ValueError):
        c.labels(a="x").inc(-1)
    with pytest.raises(ValueError):
        m.counter("bad name", "x")
    with pytest.raises(ValueError):
        m.gauge("g", "x", ["__reserved"])
    with pytest.raises(ValueError):
        m.histogram("h", "x", [1.0], ["le"])


def test_registries_are_independent() -> None:
    a, b = Metrics(), Metrics()
    a.counter("x_total", "X.").inc()
    b.counter("x_total", "X.")
    assert "x_total 1.0" in a.render() and "x_total 0.0" in b.render()
    assert a.get("x_total") is not None and a.get("nope") is None


def test_a_counter_name_must_end_in_total() -> None:
    with pytest.raises(ValueError, match="_total"):
        Metrics().counter("sipmask_calls", "C.")


def test_openmetrics_when_the_scraper_asks_for_it_else_text() -> None:
    m = Metrics()
    m.counter("c_total", "C.", ["code"]).labels(code="200").inc(2)
    body, content_type = m.exposition("application/openmetrics-text; version=1.0.0,text/plain;q=0.5")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().endswith("# EOF\n") and 'c_total{code="200"} 2.0' in body.decode()
    body, content_type = m.exposition(None)
    assert content_type.startswith("text/plain") and body.decode() == m.render()


def test_the_text_parses_back_with_the_library() -> None:
    m = Metrics()
    m.counter("c_total", "C.", ["code"]).labels(code="503").inc(4)
    m.histogram("h", "H.", [0.5]).observe(0.25)
    families = {f.name: f for f in text_string_to_metric_families(m.render())}
    assert families["c"].type == "counter"
    assert [(s.name, s.labels, s.value) for s in families["c"].samples] == [
        ("c_total", {"code": "503"}, 4.0)]
    assert families["h"].type == "histogram"
