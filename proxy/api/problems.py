"""RFC 9457 problem details: every API error is ``application/problem+json``.

Handlers raise `ApiProblem` (or let a domain error through); `problem_middleware` turns each
into a response with ``type``, ``title``, ``status`` and ``detail``, plus ``field`` for a
validation error, and turns anything unexpected into a 500 whose body says nothing about the
cause (the log has the exception type). No detail ever echoes a submitted value (a number, an
id, a key): validation messages name the field and what is wrong, and the stores' not-found and
conflict messages, which name the value for the CLI, are replaced by fixed ones here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from ..pairing.admin import InvalidField
from ..pairing.model import ConflictError, NotFound, PairingError

__all__ = ["PROBLEM_TYPE", "ApiProblem", "field_name", "problem_middleware", "problem_response"]

PROBLEM_JSON: Final = "application/problem+json"
PROBLEM_TYPE: Final = "urn:sipmask:problem:"
"""Prefix of every problem ``type``; the suffixes are listed in docs/api.md."""

_TITLES: Final = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 413: "Content Too Large",
    415: "Unsupported Media Type", 422: "Unprocessable Content", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable",
}
_SLUGS: Final = {
    400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found",
    405: "method-not-allowed", 409: "conflict", 413: "too-large", 415: "unsupported-media-type",
    422: "invalid", 429: "rate-limited", 500: "internal", 503: "unavailable",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# The stores' NotFound / ConflictError messages name the value they were given (the CLI prints
# them to the person who typed it). An API answer names the field and what is wrong instead:
# (a phrase of the store's message, the detail to answer, the field). Stores' messages are
# checked against this table by tests/unit/test_api_problems.py.
_NOT_FOUND: Final = (
    ("no session with id", "no session has this id", "session_id"),
    ("is not in the pool", "this virtual number is not in the pool", "number"),
    ("no token with id or name", "no token has this id or name", "token"),
)
_CONFLICTS: Final = (
    ("is already in the pool", "this virtual number is already in the pool", "number"),
    ("is draining", "this virtual number is draining and takes no new sessions", "virtual"),
    ("is not active", "the session is not active", "session_id"),
    ("already named", "an active token already has this name", "name"),
)
# A submitted *name* (an unknown field or query parameter, a metadata key) is named back only
# when it is a short identifier; one with a digit run could be a number (never echoed).
_SAFE_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z_.-]{0,39}(?:[.-]?[0-9]{1,3})?")


def field_name(name: str, fallback: str) -> str:
    """`name` for the ``field`` of a problem when it is a short identifier of letters (and at
    most 3 trailing digits), else `fallback`: a client's key is echoed only when it cannot
    be a phone number or anything else private."""
    return name if _SAFE_NAME.fullmatch(name) else fallback


def _public(table: tuple[tuple[str, str, str], ...], message: str,
            default: str) -> tuple[str, str | None]:
    for phrase, detail, field in table:
        if phrase in message:
            return detail, field
    return default, None


class ApiProblem(Exception):
    """An error to answer as problem+json. `slug` completes the type URI."""

    def __init__(self, status: int, detail: str, *, slug: str | None = None,
                 field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or _SLUGS.get(status, "error")
        self.field = field
        self.headers = headers or {}


def problem_response(problem: ApiProblem) -> web.Response:
    """The problem+json response for `problem`."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + problem.slug,
        "title": _TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.field is not None:
        body["field"] = problem.field
    return web.Response(status=problem.status, text=json.dumps(body),
                        content_type=PROBLEM_JSON, headers=problem.headers)


def from_exception(exc: BaseException) -> ApiProblem | None:
    """The problem for a known exception, or None for an unexpected one."""
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, InvalidField):
        return ApiProblem(422, exc.problem, field=exc.field)
    if isinstance(exc, NotFound):
        detail, field = _public(_NOT_FOUND, str(exc), "not found")
        return ApiProblem(404, detail, field=field)
    if isinstance(exc, ConflictError):
        if "pool exhausted" in str(exc):  # names the side (A/B), never a value
            return ApiProblem(409, str(exc), slug="pool-exhausted")
        detail, field = _public(_CONFLICTS, str(exc), "conflicts with the current state")
        return ApiProblem(409, detail, field=field)
    if isinstance(exc, PairingError):
        return ApiProblem(422, str(exc))
    if isinstance(exc, web.HTTPException) and exc.status >= 400:
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return ApiProblem(exc.status, exc.reason, headers=headers)
    return None


def problem_middleware(log: Any) -> Any:
    """aiohttp middleware answering every error as problem+json."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:  # noqa: BLE001 - every error becomes a problem
            found = from_exception(exc)
            if found is None:
                log.error("api.failed", path=request.match_info.route.resource.canonical
                          if request.match_info.route.resource else "?",
                          method=request.method, error=type(exc).__name__)
                found = ApiProblem(500, "the server failed to handle this request")
            return problem_response(found)

    return middleware
