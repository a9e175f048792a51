"""RFC 9457 problem details: every API error is ``application/problem+json``.

Handlers raise `ApiProblem` (or let a domain error through); `problem_middleware` turns each
into a response with ``type``, ``title``, ``status`` and ``detail``, plus ``field`` for a
validation error, and turns anything unexpected into a 500 whose body says nothing about the
cause (the log has the exception type). No detail ever carries a real number: domain errors
are written that way, and validation messages name the field, never echo the value.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web

from ..pairing.admin import InvalidField
from ..pairing.model import ConflictError, NotFound, PairingError

__all__ = ["PROBLEM_TYPE", "ApiProblem", "problem_middleware", "problem_response"]

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
        return ApiProblem(404, str(exc))
    if isinstance(exc, ConflictError):
        slug = "pool-exhausted" if "pool exhausted" in str(exc) else "conflict"
        return ApiProblem(409, str(exc), slug=slug)
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
