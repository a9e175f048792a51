"""Bearer-token authentication and role checks.

Each handler declares the least role it needs with `@requires(role)`; handlers without it
(health, readiness, metrics, the OpenAPI document) are public. Roles are ordered:
``read-only`` < ``operator`` < ``admin``. Tokens are looked up by the SHA-256 of the
presented secret on every request, so a revocation takes effect at once, and a token past its
`expires_at` is refused with 401 `token-expired` from that instant.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from aiohttp import web

from ..pairing.records import ApiToken, AuditEntry
from .context import ApiContext
from .problems import ApiProblem

__all__ = ["RANK", "actor", "auth_middleware", "requires", "token_of"]

RANK: Final = {"read-only": 0, "operator": 1, "admin": 2}
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="sipmask"'}

# aiohttp >= 3.12 types request storage keys; older versions take a plain string.
_TOKEN: Any = web.RequestKey("token", ApiToken) if hasattr(web, "RequestKey") else "token"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
F = TypeVar("F", bound=Handler)


def requires(role: str) -> Callable[[F], F]:
    """Mark a handler as needing a token of at least `role`."""
    if role not in RANK:
        raise ValueError(f"unknown role {role!r}")

    def mark(handler: F) -> F:
        setattr(handler, "required_role", role)  # noqa: B010 - F is any handler type: mypy refuses the attribute
        return handler

    return mark


def required_role(handler: Any) -> str | None:
    """The role a handler needs, None when public."""
    return getattr(handler, "required_role", None)


def token_of(request: web.Request) -> ApiToken:
    """The authenticated token of a request that passed `auth_middleware`."""
    token: ApiToken = request[_TOKEN]
    return token


def actor(request: web.Request) -> str:
    """How the audit log names the caller: ``TOKEN_ID/NAME``."""
    token = token_of(request)
    return f"{token.id}/{token.name}"


def auth_middleware(ctx: ApiContext, log: Any = None) -> Any:
    """401 without a valid bearer token (an expired one audited), 403 when its role is below
    the handler's (audited),
    429 past the rate limits of `ctx.limits` (per token; failed authentications per source)."""
    limits = ctx.limits

    def too_many(key: str, buckets: Any, now: float, reason: str) -> ApiProblem:
        if log is not None and limits.should_log(f"{reason}:{key}", now):
            log.warning("api.rate_limited", reason=reason, key=key)
        return ApiProblem(429, "too many requests; retry later",
                          headers={"Retry-After": str(buckets.retry_after(key, now))})

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        role = required_role(request.match_info.handler)
        if role is None:
            return await handler(request)
        now = time.monotonic()
        source = request.remote or "unknown"
        if not limits.failures.peek(source, now):
            # this source failed authentication too often: refused before any token lookup
            raise too_many(source, limits.failures, now, "auth_failures")
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiProblem(401, "send an API token as 'Authorization: Bearer <token>'",
                             headers=_CHALLENGE)
        token = await ctx.run(ctx.admin.authenticate, secret.strip())
        if token is None:
            limits.failures.take(source, now)
            if log is not None and limits.should_log(f"auth:{source}", now):
                log.warning("api.auth_failed", source=source, route=_route(request))
            raise ApiProblem(401, "the API token is unknown or revoked", headers=_CHALLENGE)
        wall = ctx.clock()
        if token.expired(wall):
            raise await _expired(ctx, request, token, wall, now, log)
        if limits.per_token_rate > 0 and not limits.tokens.take(token.id, now):
            raise too_many(token.id, limits.tokens, now, "per_token")
        if RANK[token.role] < RANK[role]:
            await ctx.run(ctx.store.record_audit, AuditEntry(
                ctx.clock(), f"{token.id}/{token.name}", "access.denied", _route(request),
                {"method": request.method, "needs": role, "role": token.role}))
            raise ApiProblem(403, f"this needs the {role} role; the token has {token.role}")
        request[_TOKEN] = token
        return await handler(request)

    return middleware


async def _expired(ctx: ApiContext, request: web.Request, token: ApiToken, wall: float,
                   now: float, log: Any) -> ApiProblem:
    """The 401 for an expired token; the attempt is audited (``access.expired``), logged (at
    most once per token every few seconds) and counts as a failed authentication of its
    source, as an unknown token does."""
    source = request.remote or "unknown"
    ctx.limits.failures.take(source, now)
    route = _route(request)
    await ctx.run(ctx.store.record_audit, AuditEntry(
        wall, f"{token.id}/{token.name}", "access.expired", route,
        {"method": request.method, "expired_at": token.expires_at}))
    if log is not None and ctx.limits.should_log(f"expired:{token.id}", now):
        log.warning("api.token_expired", token=token.id, route=route)
    expired_at = datetime.fromtimestamp(token.expires_at or wall, tz=UTC)
    return ApiProblem(401, f"the API token expired at {expired_at:%Y-%m-%dT%H:%M:%SZ}; "
                      "create a new one", slug="token-expired", headers={
                          "WWW-Authenticate": 'Bearer realm="sipmask", error="invalid_token", '
                                              'error_description="the token expired"'})


def _route(request: web.Request) -> str:
    """The route template (``/v1/sessions/{session_id}``), never a path with an id or number."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unknown"
