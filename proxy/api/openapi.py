"""The OpenAPI 3.1 description of the API, built here and checked in as docs/openapi.json.

``python -m proxy.api.openapi > docs/openapi.json`` regenerates the checked-in copy; a unit
test fails when the two differ or when a route of the server is not described.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["openapi_document"]

_TIME = {"type": "string", "format": "date-time"}
_NUMBER = {"type": "string", "description": "E.164 phone number, e.g. +15551230001",
           "examples": ["+15551230001"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problems(*codes: int) -> dict[str, Any]:
    """Responses for the given error statuses, and problem+json for anything else."""
    found: dict[str, Any] = {str(c): {"$ref": f"#/components/responses/P{c}"} for c in codes}
    found["default"] = {"$ref": "#/components/responses/Problem"}
    return found


def _op(summary: str, role: str | None, responses: dict[str, Any], *, params: Sequence[Any] = (),
        body: dict[str, Any] | None = None, errors: tuple[int, ...] = ()) -> dict[str, Any]:
    auth_errors = (401, 403, 429) if role else ()
    if body is not None:
        errors = (*errors, 415)
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {**responses, **_problems(*sorted(set(errors + auth_errors)))},
    }
    if role:
        op["description"] = f"Needs a token with role **{role}** or higher."
        op["security"] = [{"bearerAuth": []}]
    else:
        op["security"] = []
    if params:
        op["parameters"] = list(params)
    if body is not None:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": body}}}
    return op


def _param(name: str, where: str, schema: dict[str, Any], description: str,
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "description": description, "schema": schema}


_SESSION_ID = _param("session_id", "path", {"type": "string", "pattern": "^ps_[0-9a-f]{16}$"},
                     "Session id")
_POOL_NUMBER = _param("number", "path", {"type": "string"}, "The virtual number (E.164)")
_LIMIT = _param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 500},
                "Page size (default 50)")


def _schemas() -> dict[str, Any]:
    participant_out = {
        "type": "object", "required": ["number", "virtual"],
        "properties": {
            "number": {"type": "string", "description":
                       "Real number as submitted (E.164); for read-only masked: country code, "
                       "last 2 digits and the number's token (+1 ***01 n_b3db0ebc06ef)"},
            "virtual": {**_NUMBER, "description":
                        "The virtual number this participant dials to reach the other, and "
                        "sees as the caller when the other calls"},
        },
    }
    participant_in = {
        "type": "object", "required": ["number"], "additionalProperties": False,
        "properties": {
            "number": {**_NUMBER, "description": "Real number (E.164, or national in the "
                       "proxy's default region)"},
            "virtual": {**_NUMBER, "description": "Optional: this virtual number instead of "
                        "one allocated from the pool"},
        },
    }
    metadata = {"type": "object", "maxProperties": 20, "propertyNames":
                {"pattern": "^[A-Za-z0-9_.-]{1,64}$"},
                "additionalProperties": {"type": ["string", "number", "boolean", "null"],
                                         "maxLength": 256}}
    seconds = {"type": "number", "exclusiveMinimum": 0, "maximum": 315360000}
    return {**_session_schemas(participant_out, participant_in, metadata, seconds),
            **_other_schemas()}


def _policy_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """A session's call policy: its fields as written (create, update) and as shown."""
    limit = {"type": "number", "exclusiveMinimum": 0, "maximum": 604800}
    direction = {"type": "string", "enum": ["both", "a_to_b", "b_to_a"], "description":
                 "Who may call: both participants, only A (a_to_b) or only B (b_to_a); the "
                 "other direction gets the uniform answer"}
    written = {
        "calling_windows": {
            "type": "array", "maxItems": 16, "items": _ref("CallingWindow"),
            "description": "When calls are allowed (any window); empty or absent: any time. "
                           "Outside them a call gets the uniform answer"},
        "max_call_s": {"oneOf": [limit, {"type": "null"}], "description":
                       "Hang up a call after this long; null: calls.max_duration_s"},
        "ring_timeout_s": {"oneOf": [limit, {"type": "null"}], "description":
                           "Give up on an unanswered call after this long; null: "
                           "calls.ring_timeout_s"},
        "direction": {**direction, "default": "both"},
        "single_use": {"type": "boolean", "default": False, "description":
                       "Close the session when its first call is answered"},
    }
    shown = {
        "calling_windows": {"type": "array", "items": _ref("CallingWindow")},
        "max_call_s": {"type": ["number", "null"]},
        "ring_timeout_s": {"type": ["number", "null"]},
        "direction": direction,
        "single_use": {"type": "boolean"},
    }
    return written, shown


def _session_schemas(participant_out: dict[str, Any], participant_in: dict[str, Any],
                     metadata: dict[str, Any], seconds: dict[str, Any]) -> dict[str, Any]:
    policy_in, policy_out = _policy_schemas()
    hhmm = {"type": "string", "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"}
    return {
        "Problem": {
            "type": "object", "required": ["type", "title", "status", "detail"],
            "properties": {"type": {"type": "string", "format": "uri"},
                           "title": {"type": "string"}, "status": {"type": "integer"},
                           "detail": {"type": "string"},
                           "field": {"type": "string",
                                     "description": "The invalid field or parameter"}},
        },
        "ParticipantIn": participant_in,
        "Participant": participant_out,
        "CallingWindow": {
            "type": "object", "required": ["days", "from", "to", "tz"],
            "additionalProperties": False,
            "properties": {
                "days": {"type": "string", "examples": ["mon-fri", "sat,sun", "fri-mon"],
                         "description": "Days (mon..sun): ranges and lists, local to tz"},
                "from": {**hhmm, "description": "Local start, HH:MM"},
                "to": {**hhmm, "description": "Local end (exclusive), HH:MM after from; "
                       "24:00 ends the day (an overnight shift is two windows)"},
                "tz": {"type": "string", "examples": ["Asia/Singapore"],
                       "description": "IANA time zone; DST follows the zone's rules"},
            },
        },
        "SessionCreate": {
            "type": "object", "required": ["a", "b"], "additionalProperties": False,
            "properties": {
                "a": _ref("ParticipantIn"), "b": _ref("ParticipantIn"),
                "expires_at": {**_TIME, "description": "Absolute end (RFC 3339)"},
                "expires_in_s": {**seconds, "description": "End this long from now"},
                "ttl_s": {**seconds, "description": "End after this long without a call"},
                "metadata": metadata,
                "mode": {"type": "string", "enum": ["voice", "message"], "default": "voice"},
                **policy_in,
            },
        },
        "SessionUpdate": {
            "type": "object", "minProperties": 1, "additionalProperties": False,
            "properties": {
                "expires_at": {"oneOf": [_TIME, {"type": "null"}],
                               "description": "New absolute end; null removes it"},
                "expires_in_s": seconds,
                "ttl_s": {"oneOf": [seconds, {"type": "null"}],
                          "description": "New inactivity TTL; null removes it"},
                **policy_in,
            },
        },
        "Session": {
            "type": "object",
            "required": ["id", "status", "mode", "a", "b", "created_at", "expires_at", "ttl_s",
                         "last_activity_at", "metadata", "calling_windows", "max_call_s",
                         "ring_timeout_s", "direction", "single_use"],
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": ["open", "closed", "expired"]},
                "mode": {"type": "string", "enum": ["voice", "message"]},
                "a": _ref("Participant"), "b": _ref("Participant"),
                "created_at": _TIME,
                "expires_at": {"oneOf": [_TIME, {"type": "null"}]},
                "ttl_s": {"type": ["number", "null"]},
                "last_activity_at": _TIME,
                "metadata": {"type": "object"},
                **policy_out,
            },
        },
        "SessionPage": {
            "type": "object", "required": ["items", "next_cursor"],
            "properties": {"items": {"type": "array", "items": _ref("Session")},
                           "next_cursor": {"type": ["string", "null"],
                                           "description": "Pass as cursor for the next page"}},
        },
    }


def _other_schemas() -> dict[str, Any]:
    return {
        "PoolNumberCreate": {"type": "object", "required": ["number"],
                             "additionalProperties": False, "properties": {"number": _NUMBER}},
        "PoolNumber": {
            "type": "object", "required": ["number", "status", "added_at", "open_sessions"],
            "properties": {"number": _NUMBER,
                           "status": {"type": "string", "enum": ["active", "draining"]},
                           "added_at": _TIME, "open_sessions": {"type": "integer"}},
        },
        "PoolList": {"type": "object", "required": ["items"],
                     "properties": {"items": {"type": "array", "items": _ref("PoolNumber")}}},
        "Interaction": {
            "type": "object",
            "description": "A call detail record; numbers appear only as keyed tokens",
            "properties": {
                "session_id": {"type": ["string", "null"]}, "call_id_token": {"type": "string"},
                "caller_token": {"type": "string"}, "callee_token": {"type": "string"},
                "started_at": _TIME, "answered_at": {"oneOf": [_TIME, {"type": "null"}]},
                "ended_at": _TIME, "outcome": {"type": "string"},
                "sip_code": {"type": "integer"}, "cause": {"type": "string"},
                "duration_s": {"type": "number"},
            },
        },
        "InteractionList": {"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": _ref("Interaction")}}},
        "AuditEntry": {
            "type": "object",
            "properties": {"id": {"type": "integer"}, "at": _TIME, "actor": {"type": "string"},
                           "action": {"type": "string"}, "target": {"type": "string"},
                           "details": {"type": "object"}},
        },
        "AuditList": {"type": "object", "required": ["items", "next_before"], "properties": {
            "items": {"type": "array", "items": _ref("AuditEntry")},
            "next_before": {"type": ["integer", "null"]}}},
    }


def _paths() -> dict[str, Any]:
    session = _json(_ref("Session"), "The session")
    pool_number = _json(_ref("PoolNumber"), "The pool number")
    list_params = [
        _param("status", "query", {"type": "string", "enum": ["open", "closed", "expired"]},
               "Effective status (an open session past its deadline is expired)"),
        _param("participant", "query", {"type": "string"},
               "A participant's real number (matched through the keyed index)"),
        _param("virtual", "query", {"type": "string"}, "A virtual number on either side"),
        _param("metadata.KEY", "query", {"type": "string"},
               "Metadata value of KEY, e.g. metadata.order_id=123 (repeatable)"),
        _param("created_from", "query", _TIME, "Created at or after"),
        _param("created_to", "query", _TIME, "Created before"),
        _LIMIT,
        _param("cursor", "query", {"type": "string"}, "next_cursor of the previous page"),
    ]
    return {
        "/v1/sessions": {
            "post": _op(
                "Create a session; virtual numbers come from the pool unless given", "operator",
                {"201": {**session, "description": "Created (or replayed: header "
                         "Idempotent-Replayed: true)"}},
                params=[_param("Idempotency-Key", "header", {"type": "string", "maxLength": 255},
                               "Same key and body within 24 h: same session, not a new one")],
                body=_ref("SessionCreate"), errors=(400, 409, 413, 422)),
            "get": _op("List sessions", "read-only",
                       {"200": _json(_ref("SessionPage"), "One page")}, params=list_params,
                       errors=(422,)),
        },
        "/v1/sessions/{session_id}": {
            "get": _op("Get a session", "read-only", {"200": session}, params=[_SESSION_ID],
                       errors=(404,)),
            "patch": _op("Change expiry, TTL and/or call policy of an active session", "operator",
                         {"200": session}, params=[_SESSION_ID], body=_ref("SessionUpdate"),
                         errors=(400, 404, 409, 422)),
            "delete": _op("Close a session (same as POST .../close)", "operator",
                          {"200": session}, params=[_SESSION_ID], errors=(404,)),
        },
        "/v1/sessions/{session_id}/close": {
            "post": _op("Close a session: calls on it are rejected from now on", "operator",
                        {"200": session}, params=[_SESSION_ID], errors=(404,)),
        },
        "/v1/sessions/{session_id}/interactions": {
            "get": _op("Calls of a session, newest first", "read-only",
                       {"200": _json(_ref("InteractionList"), "Interactions")},
                       params=[_SESSION_ID, _LIMIT], errors=(404, 422)),
        },
        "/v1/cdrs/export": {
            "get": _op(
                "Call records that ended in [from, to), oldest first, as CSV or JSON lines",
                "read-only",
                {"200": {
                    "description": "The records, streamed (chunked). Columns/keys are the "
                                   "Interaction fields; numbers appear only as keyed tokens. "
                                   "A body cut short (no closing chunk) is an incomplete export",
                    "content": {"text/csv": {"schema": {"type": "string"}},
                                "application/jsonl": {"schema": {"type": "string"}}}}},
                params=[
                    _param("from", "query", {"type": "string"},
                           "Ended at or after: RFC 3339 date-time or epoch seconds",
                           required=True),
                    _param("to", "query", {"type": "string"},
                           "Ended before: RFC 3339 date-time or epoch seconds", required=True),
                    _param("session", "query",
                           {"type": "string", "pattern": "^ps_[0-9a-f]{16}$"},
                           "Only the calls of this session"),
                    _param("format", "query", {"type": "string", "enum": ["csv", "jsonl"],
                                               "default": "csv"},
                           "csv: RFC 4180 with a header line; jsonl: one JSON object a line"),
                ],
                errors=(422,)),
        },
        "/v1/pool/numbers": {
            "post": _op("Add a virtual number to the pool", "admin", {"201": pool_number},
                        body=_ref("PoolNumberCreate"), errors=(400, 409, 422)),
            "get": _op("List the pool", "read-only",
                       {"200": _json(_ref("PoolList"), "The pool")},
                       params=[_param("status", "query",
                                      {"type": "string", "enum": ["active", "draining"]},
                                      "Only numbers in this state")], errors=(422,)),
        },
        "/v1/pool/numbers/{number}": {
            "get": _op("Get a pool number", "read-only", {"200": pool_number},
                       params=[_POOL_NUMBER], errors=(404, 422)),
            "delete": _op("Remove a number no active session uses", "admin",
                          {"204": {"description": "Removed"}}, params=[_POOL_NUMBER],
                          errors=(404, 409, 422)),
        },
        "/v1/pool/numbers/{number}/drain": {
            "post": _op("Drain: the number takes no new sessions", "admin", {"200": pool_number},
                        params=[_POOL_NUMBER], errors=(404, 422)),
        },
        "/v1/pool/numbers/{number}/activate": {
            "post": _op("Re-activate a draining number", "admin", {"200": pool_number},
                        params=[_POOL_NUMBER], errors=(404, 422)),
        },
        "/v1/audit": {
            "get": _op("Audit log, newest first", "admin",
                       {"200": _json(_ref("AuditList"), "Entries")},
                       params=[_LIMIT,
                               _param("before", "query", {"type": "integer"},
                                      "Only entries with a smaller id (paging)"),
                               _param("target", "query", {"type": "string"}, "Target id"),
                               _param("actor", "query", {"type": "string"}, "TOKEN_ID/NAME")],
                       errors=(422,)),
        },
        "/v1/openapi.json": {
            "get": _op("This document", None, {"200": _json({"type": "object"}, "OpenAPI 3.1")}),
        },
        "/healthz": {
            "get": _op("Liveness", None, {"200": _json({"type": "object"}, "Alive")}),
        },
        "/readyz": {
            "get": _op("Readiness: store reachable and SIP listening", None,
                       {"200": _json({"type": "object"}, "Ready")}, errors=(503,)),
        },
        "/metrics": {
            "get": _op("Prometheus metrics", None, {"200": {
                "description": "Text exposition format 0.0.4",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}),
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the sipmask HTTP API."""
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    codes = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sipmask API",
            "version": "1.0.0",
            "description": "Sessions (pairings) between two participants whose real numbers "
                           "are masked behind virtual numbers from a pool. See docs/api.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "sipmask token create NAME "
                                               "--role admin|operator|read-only"}},
            "schemas": _schemas(),
            "responses": {
                "Problem": {"description": "RFC 9457 problem details", "content": problem},
                **{f"P{c}": {"description": f"Problem ({c})", "content": problem}
                   for c in codes},
            },
        },
    }


if __name__ == "__main__":
    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
