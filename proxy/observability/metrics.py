"""A small dependency-free metrics registry rendered in Prometheus text format 0.0.4.

There is no module-level registry: the application makes one :class:`Metrics` and passes it to
the parts that count things::

    metrics = Metrics()
    calls = metrics.counter("sipmask_calls_total", "Calls by outcome.", ["outcome"])
    calls.labels(outcome="answered").inc()
    text = metrics.render()

Label values must never carry a phone number or SIP user part: :meth:`labels` raises
:class:`ValueError` for one (checked once per distinct label set, then cached). The registry
is meant for one event loop thread; it takes no locks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Final, Generic, TypeVar

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
"""The HTTP Content-Type of :meth:`Metrics.render` output."""

DEFAULT_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Histogram buckets (seconds) used when none are given."""

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in pairs) + "}"


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

    def _samples(self) -> list[str]:
        raise NotImplementedError

    def render(self) -> str:
        """This metric's HELP, TYPE and sample lines."""
        lines = [f"# HELP {self.name} {_escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        lines.extend(self._samples())
        return "\n".join(lines) + "\n"

    def _pairs(self, key: tuple[str, ...]) -> list[tuple[str, str]]:
        return list(zip(self.labelnames, key))


class Counter(_Metric[CounterChild]):
    """A value that only goes up (``inc``)."""

    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        """Increment the unlabelled series."""
        self._unlabelled().inc(amount)

    def _samples(self) -> list[str]:
        return [
            f"{self.name}{_label_text(self._pairs(k))} {_format_value(c.value)}"
            for k, c in self._children.items()
        ]


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

    def _samples(self) -> list[str]:
        return [
            f"{self.name}{_label_text(self._pairs(k))} {_format_value(c.value)}"
            for k, c in self._children.items()
        ]


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

    def _samples(self) -> list[str]:
        lines: list[str] = []
        for key, child in self._children.items():
            pairs = self._pairs(key)
            cumulative = 0
            for bound, count in zip(self.buckets, child.counts):
                cumulative += count
                le = _label_text([*pairs, ("le", "+Inf" if math.isinf(bound) else repr(bound))])
                lines.append(f"{self.name}_bucket{le} {cumulative}")
            labels = _label_text(pairs)
            lines.append(f"{self.name}_sum{labels} {_format_value(child.sum)}")
            lines.append(f"{self.name}_count{labels} {child.count}")
        return lines


class Metrics:
    """A registry of named metrics; :meth:`render` writes them all in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Counter | Gauge | Histogram] = {}

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
        return "".join(metric.render() for metric in self._metrics.values())
