"""Our metrics, exposed through ``prometheus_client``'s custom-collector API.

There is no module-level registry: the application makes one :class:`Metrics` and passes it to
the parts that count things::

    metrics = Metrics()
    calls = metrics.counter("sipmask_calls_total", "Calls by outcome.", ["outcome"])
    calls.labels(outcome="answered").inc()
    body, content_type = metrics.exposition(request_accept_header)

Counting stays in the small lock-free children below: an ``inc`` is one attribute add, where
a ``prometheus_client`` child takes a lock per call (measured in docs/benchmarks.md, "Metrics").
Exposition is the library's: :class:`Metrics` is a ``prometheus_client`` collector, registered
in its own ``CollectorRegistry``, whose ``collect()`` yields metric families built from our
values at scrape time, so the text format (and OpenMetrics, when a scraper asks for it) is
written by ``prometheus_client`` itself.

Label values must never carry a phone number or SIP user part: :meth:`labels` raises
:class:`ValueError` for one (checked once per distinct label set, then cached). The registry
is meant for one event loop thread; counting takes no locks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from typing import Final, Generic, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from .redaction import contains_phone_number

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "DEFAULT_BUCKETS",
    "Gauge",
    "Histogram",
    "Metrics",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The HTTP Content-Type of :meth:`Metrics.render` output (Prometheus text format 0.0.4)."""

DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets (seconds) used when none are given."""

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class CounterChild:
    """One labelled series of a :class:`Counter`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add *amount* (must not be negative)."""
        if amount < 0:
            raise ValueError("counters only go up; use a gauge")
        self.value += amount


class GaugeChild:
    """One labelled series of a :class:`Gauge`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add *amount*."""
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Subtract *amount*."""
        self.value -= amount

    def set(self, value: float) -> None:
        """Set the value."""
        self.value = float(value)


class HistogramChild:
    """One labelled series of a :class:`Histogram`."""

    __slots__ = ("_bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)  # per bucket, not cumulative
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.sum += value
        self.count += 1
        for i, bound in enumerate(self._bounds):
            if value <= bound:
                self.counts[i] += 1
                return


_Child = TypeVar("_Child", CounterChild, GaugeChild, HistogramChild)


class _Metric(Generic[_Child]):
    """Shared parts: name, help, label names and the children by label values."""

    kind: str = ""

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(f"invalid metric name {name!r}")
        names = tuple(labelnames)
        for label in names:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"{name}: invalid label name {label!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"{name}: duplicate label names {names!r}")
        self.name = name
        self.help = help
        self.labelnames = names
        self._children: dict[tuple[str, ...], _Child] = {}
        self._default: _Child | None = self._new_child() if not names else None
        if self._default is not None:
            self._children[()] = self._default

    def _new_child(self) -> _Child:
        raise NotImplementedError

    def labels(self, *values: str, **kv: str) -> _Child:
        """The series for these label values (positional in label-name order, or by name).

        Raises:
            ValueError: wrong label names, or a value that looks like a phone number.
        """
        if kv:
            if values or set(kv) != set(self.labelnames):
                raise ValueError(
                    f"{self.name}: expected labels {list(self.labelnames)}, got {sorted(kv)}"
                )
            key = tuple(str(kv[n]) for n in self.labelnames)
        else:
            key = tuple(str(v) for v in values)
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {list(self.labelnames)}")
        child = self._children.get(key)
        if child is None:
            for label, value in zip(self.labelnames, key):
                if contains_phone_number(value):
                    raise ValueError(
                        f"{self.name}: label {label} would carry a phone number or SIP user"
                        " part; label values must be low-cardinality and anonymous"
                    )
            if not self.labelnames:
                raise ValueError(f"{self.name}: has no labels")
            child = self._children[key] = self._new_child()
        return child

    def _unlabelled(self) -> _Child:
        if self._default is None:
            raise ValueError(f"{self.name}: has labels {list(self.labelnames)}; use .labels()")
        return self._default

    def family(self) -> Metric:
        """This metric's current values as a ``prometheus_client`` metric family."""
        raise NotImplementedError

    def render(self) -> str:
        """This metric's HELP, TYPE and sample lines (text format 0.0.4)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Single(self.family()))
        return generate_latest(registry).decode()


class Counter(_Metric[CounterChild]):
    """A value that only goes up (``inc``)."""

    kind = "counter"

    def __init__(self, name: str, help: str, labelnames: Iterable[str] = ()) -> None:
        if not name.endswith("_total"):
            # OpenMetrics (and prometheus_client) expose a counter's samples as NAME_total
            raise ValueError(f"counter name {name!r} must end in _total")
        super().__init__(name, help, labelnames)

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        """Increment the unlabelled series."""
        self._unlabelled().inc(amount)

    def family(self) -> Metric:
        # the library appends _total to a counter's samples: name the family without it
        base = self.name[: -len("_total")] if self.name.endswith("_total") else self.name
        family = CounterMetricFamily(base, self.help, labels=self.labelnames)
        for key, child in self._children.items():
            family.add_metric(key, child.value)
        return family


class Gauge(_Metric[GaugeChild]):
    """A value that goes up and down (``inc``, ``dec``, ``set``)."""

    kind = "gauge"

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def inc(self, amount: float = 1.0) -> None:
        """Increment the unlabelled series."""
        self._unlabelled().inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        """Decrement the unlabelled series."""
        self._unlabelled().dec(amount)

    def set(self, value: float) -> None:
        """Set the unlabelled series."""
        self._unlabelled().set(value)

    def family(self) -> Metric:
        family = GaugeMetricFamily(self.name, self.help, labels=self.labelnames)
        for key, child in self._children.items():
            family.add_metric(key, child.value)
        return family


class Histogram(_Metric[HistogramChild]):
    """Observations counted into cumulative ``le`` buckets, with ``_sum`` and ``_count``."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        labelnames: Iterable[str] = (),
    ) -> None:
        bounds = sorted(float(b) for b in buckets)
        if not bounds:
            raise ValueError(f"{name}: histogram needs at least one bucket")
        if len(set(bounds)) != len(bounds):
            raise ValueError(f"{name}: duplicate buckets")
        if bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.buckets = tuple(bounds)
        if "le" in tuple(labelnames):
            raise ValueError(f"{name}: 'le' is reserved in histograms")
        super().__init__(name, help, labelnames)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.buckets)

    def observe(self, value: float) -> None:
        """Observe into the unlabelled series."""
        self._unlabelled().observe(value)

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.help, labels=self.labelnames)
        for key, child in self._children.items():
            cumulative, buckets = 0, []
            for bound, count in zip(self.buckets, child.counts):
                cumulative += count
                buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
            family.add_metric(key, buckets, child.sum)
        return family


class _Single(Collector):
    """A collector of one ready-made family (for `_Metric.render`)."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


class Metrics(Collector):
    """A registry of named metrics and the ``prometheus_client`` collector of them all (in
    registration order); :meth:`exposition` and :meth:`render` write them with the library."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        """A ``prometheus_client`` registry holding this collector (and nothing else)."""
        self.registry.register(self)

    def collect(self) -> Iterator[Metric]:
        """The ``prometheus_client`` collector API: every metric's family, at scrape time."""
        for metric in self._metrics.values():
            yield metric.family()

    def _register(self, metric: Counter | Gauge | Histogram) -> None:
        if metric.name in self._metrics:
            raise ValueError(f"metric {metric.name!r} is already registered")
        self._metrics[metric.name] = metric

    def counter(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Counter:
        """Register and return a counter."""
        metric = Counter(name, help, labelnames)
        self._register(metric)
        return metric

    def gauge(self, name: str, help: str, labelnames: Iterable[str] = ()) -> Gauge:
        """Register and return a gauge."""
        metric = Gauge(name, help, labelnames)
        self._register(metric)
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        buckets: Iterable[float] = DEFAULT_BUCKETS,
        labelnames: Iterable[str] = (),
    ) -> Histogram:
        """Register and return a histogram (an ``+Inf`` bucket is added if missing)."""
        metric = Histogram(name, help, buckets, labelnames)
        self._register(metric)
        return metric

    def get(self, name: str) -> Counter | Gauge | Histogram | None:
        """The registered metric called *name*, if any."""
        return self._metrics.get(name)

    def render(self) -> str:
        """All metrics in Prometheus text exposition format 0.0.4."""
        return generate_latest(self.registry).decode()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and Content-Type for a scrape whose ``Accept`` header is `accept`:
        OpenMetrics when the scraper asks for it, else the text format."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
