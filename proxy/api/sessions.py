"""``/v1/sessions``: create (with Idempotency-Key), get, list, update, close, interactions."""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from ..pairing.model import PairingError, Session
from ..pairing.policy import DEFAULT_POLICY, POLICY_FIELDS, PolicyError, SessionPolicy, parse_policy
from ..pairing.records import KEEP, IdempotencyRecord, Keep, SessionFilter
from .auth import actor, requires, token_of
from .codec import (
    opt_number,
    parse_limit,
    parse_metadata,
    parse_mode,
    parse_time,
    positive_seconds,
    read_json,
    reject_unknown,
    render_cdr,
    render_session,
)
from .context import CTX
from .problems import ApiProblem, field_name

__all__ = ["routes"]

_CREATE_FIELDS: Final = ("a", "b", "expires_at", "expires_in_s", "ttl_s", "metadata", "mode",
                          *POLICY_FIELDS)
_PARTICIPANT_FIELDS: Final = ("number", "virtual")
_PATCH_FIELDS: Final = ("expires_at", "expires_in_s", "ttl_s", *POLICY_FIELDS)
_MAX_KEY: Final = 255


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers)


def _shown(request: web.Request, session: Session, now: float | None = None) -> dict[str, Any]:
    """`session` as the request's token may see it (numbers masked for read-only)."""
    ctx = request.app[CTX]
    return render_session(session, token_of(request), ctx.clock() if now is None else now,
                          ctx.admin.vault.token)


def _participant(body: dict[str, Any], side: str) -> tuple[str, str | None]:
    value = body.get(side)
    if not isinstance(value, dict):
        raise ApiProblem(422, "expected an object with number (and optional virtual)",
                         field=side)
    reject_unknown(value, _PARTICIPANT_FIELDS, f"{side}.")
    number = opt_number(value, "number", f"{side}.")
    if number is None:
        raise ApiProblem(422, "required", field=f"{side}.number")
    return number, opt_number(value, "virtual", f"{side}.")


def _expiry(body: dict[str, Any], now: float) -> float | None | Keep:
    """expires_at (date-time or null) or expires_in_s (seconds from now); KEEP if neither."""
    if "expires_at" in body and "expires_in_s" in body:
        raise ApiProblem(422, "give expires_at or expires_in_s, not both", field="expires_in_s")
    if "expires_in_s" in body:
        return now + positive_seconds(body["expires_in_s"], "expires_in_s")
    if "expires_at" in body:
        value = body["expires_at"]
        return None if value is None else parse_time(value, "expires_at")
    return KEEP


def _ttl(body: dict[str, Any]) -> float | None | Keep:
    if "ttl_s" not in body:
        return KEEP
    return None if body["ttl_s"] is None else positive_seconds(body["ttl_s"], "ttl_s")


def _policy(body: dict[str, Any], base: SessionPolicy) -> SessionPolicy:
    """`base` with the policy fields of `body` applied; 422 naming the bad field."""
    try:
        return parse_policy(body, base)
    except PolicyError as exc:
        raise ApiProblem(422, exc.reason, field=exc.field[:80]) from None


def _idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= _MAX_KEY or not key.isascii() or not key.isprintable():
        raise ApiProblem(400, f"Idempotency-Key must be 1-{_MAX_KEY} printable ASCII characters",
                         field="Idempotency-Key")
    return key


@requires("operator")
async def create_session(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    key = _idempotency_key(request)
    body = await read_json(request)
    if key is None:
        return await _create(request, body)
    # Check, create and remember in one critical section: a retry racing the original
    # request must find its record, not create a second session.
    async with ctx.create_lock:
        token = token_of(request)
        body_hash = ctx.admin.vault.index(
            "idempotency:" + json.dumps(body, sort_keys=True, separators=(",", ":")))
        seen = await ctx.run(ctx.store.get_idempotency, token.id, key)
        if seen is not None:
            if seen.body_hash != body_hash:
                raise ApiProblem(422, "this Idempotency-Key was used with a different body",
                                 slug="idempotency-key-reused", field="Idempotency-Key")
            session = await ctx.run(ctx.store.get_session, seen.session_id)
            return _json(_shown(request, session), 201,
                         {"Idempotent-Replayed": "true",
                          "Location": f"/v1/sessions/{session.id}"})
        response = await _create(request, body)
        session_id = response.headers["Location"].rpartition("/")[2]
        await ctx.run(ctx.store.put_idempotency,
                      IdempotencyRecord(token.id, key, body_hash, session_id, ctx.clock()))
        return response


async def _create(request: web.Request, body: dict[str, Any]) -> web.Response:
    ctx = request.app[CTX]
    reject_unknown(body, _CREATE_FIELDS)
    number_a, virtual_a = _participant(body, "a")
    number_b, virtual_b = _participant(body, "b")
    expires_at = _expiry(body, ctx.clock())
    ttl_s = _ttl(body)
    metadata = parse_metadata(body["metadata"]) if body.get("metadata") is not None else None
    mode = parse_mode(body.get("mode", "voice"))
    policy = _policy(body, DEFAULT_POLICY)
    session = ctx.changed(await ctx.run(
        ctx.admin.create_session, actor(request), number_a, number_b,
        virtual_a=virtual_a, virtual_b=virtual_b,
        expires_at=None if isinstance(expires_at, Keep) else expires_at,
        ttl_s=None if isinstance(ttl_s, Keep) else ttl_s,
        metadata=metadata, mode=mode, policy=policy,
    ))
    return _json(_shown(request, session), 201,
                 {"Location": f"/v1/sessions/{session.id}"})


@requires("read-only")
async def get_session(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    session = await ctx.run(ctx.store.get_session, request.match_info["session_id"])
    return _json(_shown(request, session))


def _filter(request: web.Request) -> SessionFilter:
    query = request.query
    known = {"status", "participant", "virtual", "created_from", "created_to", "limit", "cursor"}
    metadata = []
    for name, value in query.items():
        if name.startswith("metadata."):
            metadata.append((name[len("metadata."):], value))
        elif name not in known:
            raise ApiProblem(422, "unknown query parameter", field=field_name(name, "query"))
    status = query.get("status")
    if status is not None and status not in ("open", "closed", "expired"):
        raise ApiProblem(422, "expected open, closed or expired", field="status")
    ctx = request.app[CTX]
    participant = query.get("participant")
    if participant is not None and token_of(request).role == "read-only":
        # a role that sees numbers masked must not confirm guesses of them through a filter
        raise ApiProblem(403, "filtering by participant number needs a role that may see "
                         "numbers (operator or admin)", field="participant")
    virtual = query.get("virtual")
    return SessionFilter(
        status=status,
        participant=None if participant is None else ctx.admin.number(participant, "participant"),
        virtual=None if virtual is None else ctx.admin.number(virtual, "virtual"),
        metadata=tuple(metadata),
        created_from=_query_time(request, "created_from"),
        created_to=_query_time(request, "created_to"),
    )


def _query_time(request: web.Request, name: str) -> float | None:
    value = request.query.get(name)
    return None if value is None else parse_time(value, name)


@requires("read-only")
async def list_sessions(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    where = _filter(request)
    limit = parse_limit(request)
    cursor = request.query.get("cursor")
    now = ctx.clock()
    try:
        page = await ctx.run(ctx.store.find_sessions, where, now=now, limit=limit,
                             cursor=cursor)
    except PairingError:  # statuses are checked above: only the cursor is left (and the
        # store's message may name the session it points at)
        raise ApiProblem(422, "cursor is not valid (pass next_cursor of a previous page)",
                         field="cursor") from None
    return _json({
        "items": [_shown(request, s, now) for s in page.items],
        "next_cursor": page.next_cursor,
    })


@requires("operator")
async def update_session(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = await read_json(request)
    reject_unknown(body, _PATCH_FIELDS)
    if not body:
        raise ApiProblem(422, f"give one of {', '.join(_PATCH_FIELDS)}", field="expires_at")
    session_id = request.match_info["session_id"]
    expires_at = _expiry(body, ctx.clock())
    ttl_s = _ttl(body)
    policy: SessionPolicy | Keep = KEEP
    if any(name in body for name in POLICY_FIELDS):
        # the fields not given keep their value (404 here for an unknown session)
        current = await ctx.run(ctx.store.get_session, session_id)
        policy = _policy(body, current.policy)
    session = ctx.changed(await ctx.run(
        ctx.admin.update_session, actor(request), session_id,
        expires_at=expires_at, ttl_s=ttl_s, policy=policy))
    return _json(_shown(request, session))


@requires("operator")
async def close_session(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    session = ctx.changed(await ctx.run(
        ctx.admin.close_session, actor(request), request.match_info["session_id"]))
    return _json(_shown(request, session))


@requires("read-only")
async def list_interactions(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    session_id = request.match_info["session_id"]
    await ctx.run(ctx.store.get_session, session_id)  # 404 for an unknown session
    limit = parse_limit(request, default=100)
    cdrs = await ctx.run(ctx.store.list_cdrs, session_id=session_id, limit=limit)
    return _json({"items": [render_cdr(c) for c in cdrs]})


def routes() -> list[web.RouteDef]:
    return [
        web.post("/v1/sessions", create_session),
        web.get("/v1/sessions", list_sessions, allow_head=False),
        web.get("/v1/sessions/{session_id}", get_session, allow_head=False),
        web.patch("/v1/sessions/{session_id}", update_session),
        web.delete("/v1/sessions/{session_id}", close_session),
        web.post("/v1/sessions/{session_id}/close", close_session),
        web.get("/v1/sessions/{session_id}/interactions", list_interactions, allow_head=False),
    ]
