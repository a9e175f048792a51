"""Request parsing and response rendering for the API: JSON bodies, query values, times.

Every parser raises `ApiProblem` 400 (malformed request) or 422 (a value that is wrong),
naming the field and never echoing a value, since a value may be a phone number.
Times go out as RFC 3339 UTC strings (``2024-05-01T12:00:00.000Z``) and come in as RFC 3339
with an offset.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from aiohttp import web

from ..pairing.model import MODES, Cdr, Session
from ..pairing.normalize import mask_number
from ..pairing.policy import policy_to_json
from ..pairing.records import ApiToken, AuditEntry, PoolNumber
from .problems import ApiProblem, field_name

__all__ = [
    "MAX_TTL_S", "ftime", "opt_number", "parse_time", "read_json", "render_audit", "render_cdr",
    "render_pool", "render_session", "reject_unknown", "parse_limit",
]

MAX_TTL_S: Final = 10 * 365 * 86_400.0
_META_KEY: Final = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_MAX_META_KEYS: Final = 20
_MAX_META_STR: Final = 256


def ftime(ts: float | None) -> str | None:
    """Epoch seconds as an RFC 3339 UTC string (None stays None)."""
    if ts is None:
        return None
    text = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def parse_time(value: Any, field: str) -> float:
    """An RFC 3339 date-time with an offset, as epoch seconds."""
    if not isinstance(value, str) or len(value) > 40:
        raise ApiProblem(422, "expected an RFC 3339 date-time string", field=field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ApiProblem(422, "expected an RFC 3339 date-time string", field=field) from None
    if moment.tzinfo is None:
        raise ApiProblem(422, "the date-time needs an offset such as Z or +02:00", field=field)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise ApiProblem(422, "date-time out of range", field=field) from None


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object; 415 unless it is sent as JSON (RFC 9110 §15.5.16)."""
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiProblem(415, "send the request body as application/json",
                         headers={"Accept-Post": "application/json"})
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiProblem(413, "the request body is too large") from None
    if not raw.strip():
        raise ApiProblem(400, "expected a JSON object as the request body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ApiProblem(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiProblem(400, "expected a JSON object as the request body")
    return body


def reject_unknown(body: dict[str, Any], allowed: tuple[str, ...], prefix: str = "") -> None:
    """422 for a key of `body` not in `allowed`."""
    for key in body:
        if key not in allowed:
            raise ApiProblem(422, f"unknown field; expected {', '.join(allowed)}",
                             field=field_name(f"{prefix}{key}", prefix.rstrip(".") or "body"))


def positive_seconds(value: Any, field: str) -> float:
    """A number of seconds, > 0 and at most ten years."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiProblem(422, "expected a number of seconds", field=field)
    if not math.isfinite(value) or not 0 < value <= MAX_TTL_S:
        raise ApiProblem(422, f"expected a number of seconds above 0 and at most {MAX_TTL_S:.0f}",
                         field=field)
    return float(value)


def opt_number(body: dict[str, Any], field: str, prefix: str = "") -> str | None:
    """A phone-number field as a string, or None when absent."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 64:
        raise ApiProblem(422, "expected a phone number as a string", field=prefix + field)
    return value


def parse_mode(value: Any) -> str:
    if value not in MODES:
        raise ApiProblem(422, f"expected one of {', '.join(MODES)}", field="mode")
    return str(value)


def parse_metadata(value: Any) -> dict[str, Any]:
    """Metadata: up to 20 keys, values strings (<= 256 chars), numbers, booleans or null."""
    if not isinstance(value, dict):
        raise ApiProblem(422, "expected an object", field="metadata")
    if len(value) > _MAX_META_KEYS:
        raise ApiProblem(422, f"at most {_MAX_META_KEYS} keys", field="metadata")
    for key, item in value.items():
        if not _META_KEY.fullmatch(key):
            raise ApiProblem(422, "keys are 1-64 letters, digits or _.-", field="metadata")
        ok = item is None or isinstance(item, (bool, int, str)) or (
            isinstance(item, float) and math.isfinite(item))
        if not ok or (isinstance(item, str) and len(item) > _MAX_META_STR):
            raise ApiProblem(422, "values are strings (at most 256 characters), numbers, "
                             "booleans or null", field=field_name(f"metadata.{key}", "metadata"))
    return dict(value)


def parse_limit(request: web.Request, default: int = 50, most: int = 500) -> int:
    text = request.query.get("limit")
    if text is None:
        return default
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise ApiProblem(422, f"expected an integer from 1 to {most}", field="limit")
    return int(text)


# -- rendering --------------------------------------------------------------------------------

def render_session(session: Session, token: ApiToken, now: float,
                   number_token: Callable[[str], str]) -> dict[str, Any]:
    """A session as the API shows it; real numbers masked for the read-only role
    (`mask_number`, with the keyed token `number_token` gives for the number)."""
    if token.role == "read-only":
        a, b = (mask_number(n, number_token(n)) for n in (session.a.number, session.b.number))
    else:
        a, b = session.a.number, session.b.number
    return {
        "id": session.id,
        "status": session.effective_status(now),
        "mode": session.mode,
        "a": {"number": a, "virtual": session.a.virtual},
        "b": {"number": b, "virtual": session.b.virtual},
        "created_at": ftime(session.created_at),
        "expires_at": ftime(session.expires_at),
        "ttl_s": session.ttl_s,
        "last_activity_at": ftime(session.last_activity),
        "metadata": session.metadata,
        **policy_to_json(session.policy),
    }


def render_pool(number: PoolNumber) -> dict[str, Any]:
    return {
        "number": number.number,
        "status": number.status,
        "added_at": ftime(number.added_at),
        "open_sessions": number.open_sessions,
    }


def render_cdr(cdr: Cdr) -> dict[str, Any]:
    return {
        "session_id": cdr.session_id,
        "call_id_token": cdr.call_id_token,
        "caller_token": cdr.caller_token,
        "callee_token": cdr.callee_token,
        "started_at": ftime(cdr.started_at),
        "answered_at": ftime(cdr.answered_at),
        "ended_at": ftime(cdr.ended_at),
        "outcome": cdr.outcome,
        "sip_code": cdr.sip_code,
        "cause": cdr.cause,
        "duration_s": cdr.duration_s,
    }


def render_audit(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": ftime(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
    }
