"""A session's call policy: parsing with errors that name the field, calling windows on a
fake clock (edges, days, zones across DST), directions, and what the cache hands the B2BUA."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from proxy.pairing.cache import PairingCache
from proxy.pairing.model import Participant, new_session
from proxy.pairing.policy import (
    DEFAULT_POLICY,
    PolicyError,
    SessionPolicy,
    parse_policy,
    policy_from_json,
    policy_to_json,
    store_text,
)

A, B = "+15551230001", "+15551230002"
VA, VB = "+15559990001", "+15559990002"
COURIER = {"days": "mon-fri", "from": "08:00", "to": "20:00", "tz": "Asia/Singapore"}


def at(text: str, zone: str) -> float:
    """Epoch seconds of local time `text` (ISO) in `zone`."""
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone)).timestamp()


def refusal(policy: SessionPolicy, side: str, wall: float) -> str | None:
    call = policy.for_caller(side)
    return None if call is None else call.refusal(wall)


def windowed(*windows: dict[str, str]) -> SessionPolicy:
    return parse_policy({"calling_windows": list(windows)})


# -- windows ------------------------------------------------------------------------------------

def test_window_edges_are_inclusive_from_and_exclusive_to() -> None:
    policy = windowed(COURIER)
    tz = "Asia/Singapore"  # 2026-12-03 is a Thursday
    assert refusal(policy, "a", at("2026-12-03T07:59:59", tz)) == "outside_window"
    assert refusal(policy, "a", at("2026-12-03T08:00:00", tz)) is None
    assert refusal(policy, "a", at("2026-12-03T19:59:59", tz)) is None
    assert refusal(policy, "a", at("2026-12-03T20:00:00", tz)) == "outside_window"
    # both participants are held to it
    assert refusal(policy, "b", at("2026-12-03T20:00:00", tz)) == "outside_window"


def test_window_is_read_in_its_own_zone_not_utc() -> None:
    policy = windowed(COURIER)
    # 01:00 UTC is 09:00 in Singapore (inside), 23:00 UTC the previous day is 07:00 (outside)
    assert refusal(policy, "a", at("2026-12-03T01:00:00", "UTC")) is None
    assert refusal(policy, "a", at("2026-12-02T23:00:00", "UTC")) == "outside_window"


def test_days_of_the_week_in_local_time() -> None:
    policy = windowed(COURIER)
    tz = "Asia/Singapore"
    assert refusal(policy, "a", at("2026-12-05T12:00:00", tz)) == "outside_window"  # Saturday
    assert refusal(policy, "a", at("2026-12-07T12:00:00", tz)) is None  # Monday
    # Friday 18:00 UTC is already Saturday 02:00 in Singapore
    assert refusal(policy, "a", at("2026-12-04T18:00:00", "UTC")) == "outside_window"


@pytest.mark.parametrize(("local", "inside"), [
    ("2026-03-29T07:59:00", False), ("2026-03-29T08:00:00", True),  # Berlin springs forward
    ("2026-03-29T19:59:00", True), ("2026-03-29T20:00:00", False),
    ("2026-10-25T08:00:00", True), ("2026-10-25T07:59:00", False),  # and falls back
])
def test_windows_follow_the_zones_dst(local: str, inside: bool) -> None:
    policy = windowed({"days": "mon-sun", "from": "08:00", "to": "20:00", "tz": "Europe/Berlin"})
    wall = at(local, "Europe/Berlin")
    assert (refusal(policy, "a", wall) is None) is inside


def test_dst_moves_the_window_in_utc() -> None:
    """The same local window is 07:00-19:00 UTC in winter and 06:00-18:00 UTC in summer."""
    policy = windowed({"days": "mon-sun", "from": "08:00", "to": "20:00", "tz": "Europe/Berlin"})
    assert refusal(policy, "a", at("2026-03-28T06:30:00", "UTC")) == "outside_window"  # 07:30 CET
    assert refusal(policy, "a", at("2026-03-29T06:30:00", "UTC")) is None  # 08:30 CEST


def test_several_windows_any_one_allows() -> None:
    policy = windowed({"days": "mon-fri", "from": "09:00", "to": "12:00", "tz": "UTC"},
                      {"days": "sat,sun", "from": "14:00", "to": "24:00", "tz": "UTC"})
    assert refusal(policy, "a", at("2026-12-03T10:00:00", "UTC")) is None
    assert refusal(policy, "a", at("2026-12-03T15:00:00", "UTC")) == "outside_window"
    assert refusal(policy, "a", at("2026-12-06T23:59:59", "UTC")) is None  # Sunday, to 24:00
    assert refusal(policy, "a", at("2026-12-07T00:00:00", "UTC")) == "outside_window"


def test_day_ranges_wrap_and_render_short() -> None:
    policy = windowed({"days": "fri-mon", "from": "00:00", "to": "24:00", "tz": "UTC"},
                      {"days": "mon,tue,wed,sun", "from": "01:00", "to": "02:00", "tz": "UTC"})
    shown = policy_to_json(policy)["calling_windows"]
    assert shown[0]["days"] == "mon,fri-sun"
    assert shown[1] == {"days": "mon-wed,sun", "from": "01:00", "to": "02:00", "tz": "UTC"}
    assert refusal(policy, "a", at("2026-12-08T12:00:00", "UTC")) == "outside_window"  # Tue


# -- direction, single use, limits ---------------------------------------------------------------

def test_one_way_refuses_only_the_other_direction() -> None:
    a_only = parse_policy({"direction": "a_to_b"})
    assert a_only.for_caller("a") is None  # nothing else asked: A's calls pay nothing
    assert refusal(a_only, "b", 0.0) == "wrong_direction"
    b_only = parse_policy({"direction": "b_to_a"})
    assert refusal(b_only, "a", 0.0) == "wrong_direction"
    assert b_only.for_caller("b") is None


def test_default_policy_asks_nothing() -> None:
    assert DEFAULT_POLICY.for_caller("a") is None and DEFAULT_POLICY.for_caller("b") is None
    assert parse_policy({"direction": "both", "single_use": False}).for_caller("a") is None


def test_limits_and_single_use_reach_both_directions() -> None:
    policy = parse_policy({"max_call_s": 300, "ring_timeout_s": 20, "single_use": True})
    for side in "ab":
        call = policy.for_caller(side)
        assert call is not None and call.refusal(0.0) is None
        assert (call.max_call_s, call.ring_timeout_s, call.single_use) == (300.0, 20.0, True)


# -- parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "field"), [
    ({"calling_windows": {"days": "mon"}}, "calling_windows"),
    ({"calling_windows": ["mon-fri"]}, "calling_windows[0]"),
    ({"calling_windows": [{**COURIER, "tz": "Mars/Olympus"}]}, "calling_windows[0].tz"),
    ({"calling_windows": [{**COURIER, "tz": "America"}]}, "calling_windows[0].tz"),  # a folder
    ({"calling_windows": [{**COURIER, "tz": "x" * 300}]}, "calling_windows[0].tz"),
    ({"calling_windows": [{**COURIER, "tz": "../../../etc/localtime"}]}, "calling_windows[0].tz"),
    ({"calling_windows": [COURIER, {**COURIER, "days": "weekdays"}]}, "calling_windows[1].days"),
    ({"calling_windows": [{**COURIER, "from": "8:00"}]}, "calling_windows[0].from"),
    ({"calling_windows": [{**COURIER, "to": "24:01"}]}, "calling_windows[0].to"),
    ({"calling_windows": [{**COURIER, "to": "07:00"}]}, "calling_windows[0].to"),
    ({"calling_windows": [{**COURIER, "until": "x"}]}, "calling_windows[0].until"),
    ({"calling_windows": [{"days": "mon", "from": "08:00", "to": "09:00"}]},
     "calling_windows[0].tz"),
    ({"max_call_s": 0}, "max_call_s"), ({"max_call_s": True}, "max_call_s"),
    ({"ring_timeout_s": "30"}, "ring_timeout_s"), ({"ring_timeout_s": 8 * 86400}, "ring_timeout_s"),
    ({"direction": "a-b"}, "direction"), ({"single_use": "yes"}, "single_use"),
])
def test_bad_values_name_their_field(raw: dict[str, object], field: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(raw)
    assert caught.value.field == field


def test_parse_keeps_the_base_for_fields_not_given() -> None:
    base = parse_policy({"direction": "a_to_b", "max_call_s": 60})
    changed = parse_policy({"max_call_s": None, "single_use": True}, base)
    assert changed == SessionPolicy(direction="a_to_b", single_use=True)


def test_store_text_round_trips() -> None:
    policy = parse_policy({"calling_windows": [COURIER], "max_call_s": 90, "ring_timeout_s": 15,
                           "direction": "b_to_a", "single_use": True})
    assert policy_from_json(store_text(policy)) == policy
    assert store_text(DEFAULT_POLICY) == "{}"
    assert policy_from_json("{}") is DEFAULT_POLICY and policy_from_json(None) is DEFAULT_POLICY


# -- the cache ----------------------------------------------------------------------------------

def test_the_cache_gives_each_direction_its_policy_shared_between_sessions() -> None:
    cache = PairingCache()
    policy = parse_policy({"direction": "a_to_b", "calling_windows": [COURIER]})
    sessions = [new_session(Participant(f"+1555123000{i}", VA), Participant(f"+1555123100{i}", VB),
                            expires_at=None, ttl_s=None, metadata=None, mode="voice", now=0.0,
                            policy=policy) for i in range(3)]
    cache.load(sessions)
    forward = [cache.lookup(s.a.number, VA, 1.0) for s in sessions]
    back = [cache.lookup(s.b.number, VB, 1.0) for s in sessions]
    assert all(m is not None and m.policy is forward[0].policy for m in forward)  # type: ignore[union-attr]
    assert forward[0] is not None and forward[0].policy is not None
    assert not forward[0].policy.refused_direction
    assert back[0] is not None and back[0].policy is not None and back[0].policy.refused_direction
    plain = new_session(Participant(A, VA), Participant(B, VB), expires_at=None, ttl_s=None,
                        metadata=None, mode="voice", now=0.0)
    cache.apply(plain)
    match = cache.lookup(A, VA, 1.0)
    assert match is not None and match.policy is None
