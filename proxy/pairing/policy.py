"""A session's call policy: when its calls may be made (calling windows in a time zone),
how long one may ring and last, who may call whom, and whether it ends after one call.

`SessionPolicy` is what a session stores and the API shows; `CallPolicy` is what one direction
of it asks of each call, built once when the cache indexes the session and shared between
sessions with the same policy (most sessions have none: their `Match.policy` is None and the
call path pays one attribute test). Plain values, no storage; the clock is the caller's (the
B2BUA's wall clock), so windows are tested with a fake one.

Windows are local wall-clock times in an IANA zone (`zoneinfo`, with the `tzdata` package
where the system has no zone files): "08:00" to "20:00" stays 08:00-20:00 across a DST
change. A window does not cross midnight; an overnight shift is two windows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import cache
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

__all__ = [
    "DEFAULT_POLICY",
    "DIRECTIONS",
    "POLICY_FIELDS",
    "CallPolicy",
    "CallingWindow",
    "PolicyError",
    "SessionPolicy",
    "parse_policy",
    "policy_from_json",
    "policy_to_json",
    "store_text",
]

Direction = Literal["both", "a_to_b", "b_to_a"]
DIRECTIONS: Final[tuple[str, ...]] = ("both", "a_to_b", "b_to_a")
POLICY_FIELDS: Final[tuple[str, ...]] = (
    "calling_windows", "max_call_s", "ring_timeout_s", "direction", "single_use",
)
_DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_FIELDS: Final = ("days", "from", "to", "tz")
_MAX_WINDOWS: Final = 16
_MAX_SECONDS: Final = 7 * 86_400.0


class PolicyError(ValueError):
    """A policy value is not valid; `field` names it as the API does (``calling_windows[0].tz``).
    (A ValueError, not a PairingError: `model` imports this module.)"""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(f"{field}: {message}")
        self.reason = message
        self.field = field


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Calls allowed on `days` (0 = Monday) from minute `start` to minute `end` (exclusive)
    of the local day in zone `tz`."""

    days: frozenset[int]
    start: int
    end: int
    tz: str
    zone: ZoneInfo = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", ZoneInfo(self.tz))

    def allows(self, wall: float) -> bool:
        """Whether epoch second `wall` falls inside this window."""
        local = datetime.fromtimestamp(wall, self.zone)
        if local.weekday() not in self.days:
            return False
        return self.start <= local.hour * 60 + local.minute < self.end

    def to_json(self) -> dict[str, str]:
        """The window as the API shows it."""
        return {"days": _days_text(self.days), "from": _hhmm(self.start), "to": _hhmm(self.end),
                "tz": self.tz}


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """What one direction of a session asks of a call (see the module docstring)."""

    refused_direction: bool
    windows: tuple[CallingWindow, ...]
    max_call_s: float | None
    ring_timeout_s: float | None
    single_use: bool

    def refusal(self, wall: float) -> str | None:
        """Why a call placed at epoch second `wall` is refused (the counter and log reason:
        ``wrong_direction``, ``outside_window``), or None when it may go on."""
        if self.refused_direction:
            return "wrong_direction"
        if self.windows and not any(window.allows(wall) for window in self.windows):
            return "outside_window"
        return None


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """A session's policy. Defaults: any time, the config's ring timeout and maximum call
    duration ([calls]), both directions, any number of calls."""

    calling_windows: tuple[CallingWindow, ...] = ()
    max_call_s: float | None = None
    ring_timeout_s: float | None = None
    direction: Direction = "both"
    single_use: bool = False

    def for_caller(self, side: str) -> CallPolicy | None:
        """The `CallPolicy` of calls placed by participant `side` ("a" or "b"); None when
        this policy asks nothing of them."""
        refused = (self.direction == "a_to_b" and side == "b") or (
            self.direction == "b_to_a" and side == "a")
        if not refused and replace(self, direction="both") == DEFAULT_POLICY:
            return None
        return CallPolicy(refused, self.calling_windows, self.max_call_s, self.ring_timeout_s,
                          self.single_use)


DEFAULT_POLICY: Final = SessionPolicy()


def policy_to_json(policy: SessionPolicy) -> dict[str, Any]:
    """The policy's fields as the API shows them (every field, defaults included)."""
    return {
        "calling_windows": [window.to_json() for window in policy.calling_windows],
        "max_call_s": policy.max_call_s,
        "ring_timeout_s": policy.ring_timeout_s,
        "direction": policy.direction,
        "single_use": policy.single_use,
    }


def policy_from_json(text: str | bytes | None) -> SessionPolicy:
    """The policy a store kept with `store_text` (empty, None or ``{}``: the default)."""
    if not text or text in ("{}", b"{}"):
        return DEFAULT_POLICY
    return parse_policy(json.loads(text))


def store_text(policy: SessionPolicy) -> str:
    """The compact JSON a store keeps (``{}`` for the default policy)."""
    if policy == DEFAULT_POLICY:
        return "{}"
    return json.dumps(policy_to_json(policy), sort_keys=True, separators=(",", ":"))


def parse_policy(raw: Mapping[str, Any], base: SessionPolicy = DEFAULT_POLICY) -> SessionPolicy:
    """`base` with the policy fields present in `raw` replaced (other keys are ignored: the
    caller checks for unknown ones); `PolicyError` naming the first bad field."""
    changes: dict[str, Any] = {}
    if "calling_windows" in raw:
        changes["calling_windows"] = _windows(raw["calling_windows"])
    for name in ("max_call_s", "ring_timeout_s"):
        if name in raw:
            changes[name] = _seconds(raw[name], name)
    if "direction" in raw:
        if raw["direction"] not in DIRECTIONS:
            raise PolicyError(f"expected one of {', '.join(DIRECTIONS)}", "direction")
        changes["direction"] = raw["direction"]
    if "single_use" in raw:
        if not isinstance(raw["single_use"], bool):
            raise PolicyError("expected true or false", "single_use")
        changes["single_use"] = raw["single_use"]
    return replace(base, **changes) if changes else base


def _seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value <= _MAX_SECONDS):
        raise PolicyError(f"expected a number of seconds above 0 and at most {_MAX_SECONDS:.0f}"
                          " (or null for the config's default)", name)
    return float(value)


def _windows(value: Any) -> tuple[CallingWindow, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > _MAX_WINDOWS:
        raise PolicyError(f"expected a list of at most {_MAX_WINDOWS} windows (empty: any time)",
                          "calling_windows")
    return tuple(_window(item, f"calling_windows[{i}]") for i, item in enumerate(value))


def _window(item: Any, where: str) -> CallingWindow:
    if not isinstance(item, dict):
        raise PolicyError('expected an object {"days", "from", "to", "tz"}', where)
    for key in item:
        if key not in _WINDOW_FIELDS:
            raise PolicyError("unknown field", f"{where}.{str(key)[:40]}")
    for key in _WINDOW_FIELDS:
        if not isinstance(item.get(key), str):
            raise PolicyError("required (a string)", f"{where}.{key}")
    days = _parse_days(item["days"], f"{where}.days")
    start = _parse_time(item["from"], f"{where}.from")
    end = _parse_time(item["to"], f"{where}.to")
    if end <= start:
        raise PolicyError('must be after "from" (a window does not cross midnight: use two)',
                          f"{where}.to")
    # only names the zone database lists: a free-form key would have zoneinfo probe any path
    if item["tz"] not in _zones():
        raise PolicyError("unknown IANA time zone (e.g. Europe/Paris)", f"{where}.tz")
    try:
        return CallingWindow(days, start, end, item["tz"])
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise PolicyError("unreadable IANA time zone", f"{where}.tz") from None


@cache
def _zones() -> frozenset[str]:
    """The zone names of the system's database or the tzdata package (read once, ~50 ms)."""
    return frozenset(available_timezones())


def _parse_days(text: str, where: str) -> frozenset[int]:
    """``mon-fri``, ``sat,sun``, ``fri-mon`` (wrapping), ``mon-fri,sun``."""
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, dash, last = part.partition("-")
        if first not in _DAYS or (dash and last not in _DAYS):
            raise PolicyError("expected days such as mon-fri or sat,sun", where)
        i, j = _DAYS.index(first), _DAYS.index(last) if dash else _DAYS.index(first)
        days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
    return frozenset(days)


def _parse_time(text: str, where: str) -> int:
    """``HH:MM`` as minutes from midnight; ``24:00`` is the end of the day."""
    hours, colon, minutes = text.partition(":")
    if not (colon and len(hours) == 2 and len(minutes) == 2 and hours.isdigit()
            and minutes.isdigit()):
        raise PolicyError("expected HH:MM (00:00 to 24:00)", where)
    value = int(hours) * 60 + int(minutes)
    if int(minutes) > 59 or value > 24 * 60:
        raise PolicyError("expected HH:MM (00:00 to 24:00)", where)
    return value


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _days_text(days: frozenset[int]) -> str:
    """The shortest ``mon-fri,sun`` form of a set of days."""
    parts, i = [], 0
    while i < 7:
        if i not in days:
            i += 1
            continue
        j = i
        while j + 1 < 7 and j + 1 in days:
            j += 1
        parts.append(_DAYS[i] if i == j else f"{_DAYS[i]}-{_DAYS[j]}")
        i = j + 1
    return ",".join(parts)
