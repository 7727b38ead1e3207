"""The OpenAPI 3.1 description of what the app does, served at `/openapi.json`.

Exact, not permissive: every object is closed, every status an operation can
answer is listed with the error codes it carries, and every header the app
sets is declared. `tests/e2e/test_conformance.py` fuzzes a live gunicorn with
this document and fails on any difference.

Which strategy and symbol names a discover body may list depends on the app:
pass its names and the document enumerates them (an unknown name is a `400`).

Operations are grouped by `TAGS`, and carry examples (`tests/unit` checks each
against its schema), which `/docs` shows and fills its "Try it out" with.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from oppscan.http import resources as routes
from oppscan.http.middleware import REQUEST_ID
from oppscan.http.resources import API, MAX_LIST
from oppscan.http.validation import DEFAULT_TIMEFRAME, MAX_STRATEGIES, MAX_SYMBOLS
from oppscan.market import TIMEFRAMES
from oppscan.model import SCAN_ID as SCAN_ID_PATTERN
from oppscan.model import STRATEGY_STATES

JSON = "application/json"
RUNNING = ["queued", "scanning"]
FINISHED = ["complete", "failed", "cancelled"]

Schema = dict[str, Any]

SCAN_ID: Schema = {"type": "string", "pattern": f"^{SCAN_ID_PATTERN.pattern}$"}
STAMP: Schema = {"type": "string", "format": "date-time"}
COUNT: Schema = {"type": "integer", "minimum": 0}
WORKER: Schema = {"type": "string", "pattern": "^.+:[0-9]+$"}  # settings.worker_name
TIMEFRAME: Schema = {"type": "string", "enum": list(TIMEFRAMES)}


def _scan_url(kind: str) -> Schema:
    return {"type": "string", "pattern": f"^{API}/opportunities/{kind}/{SCAN_ID_PATTERN.pattern}$"}


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _closed(required: Schema, optional: Schema | None = None, **extra: Any) -> Schema:
    """An object with exactly these properties: all of `required`, any of `optional`."""
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
        **extra,
    }


def _when(status: Sequence[str], then: Schema) -> Schema:
    """`then` applies to the object when its `status` is one of `status`."""
    return {"if": {"properties": {"status": {"enum": list(status)}}}, "then": then}


# -- Headers -----------------------------------------------------------------------


def _header(description: str, schema: Schema) -> Schema:
    return {"description": description, "required": True, "schema": schema}


BEARER_CHALLENGE = r'^Bearer( error="invalid_token", error_description="[ !#-\[\]-~]*")?$'
HEADERS: dict[str, Schema] = {
    "X-Served-By": _header("The worker that answered, `host:pid`", WORKER),
    "X-Request-ID": _header(
        "The request's id: the client's `X-Request-ID` when well formed, else a new one",
        {"type": "string", "pattern": REQUEST_ID.pattern},
    ),
    "X-Scan-Source": _header(
        "Where the answer came from: the scan's own actor, the registry cache, or Redis",
        {"type": "string", "enum": ["actor", "cache", "store"]},
    ),
    "Retry-After": _header("Seconds to wait before retrying", {"type": "integer", "minimum": 0}),
    "WWW-Authenticate": _header(
        '`Bearer` when no token was sent; with `error="invalid_token"` and why (expired, '
        "or what is invalid) when the token was refused (RFC 6750)",
        {"type": "string", "pattern": BEARER_CHALLENGE},
    ),
    "Location": _header("The scan's status URL", _scan_url("status")),
    "ETag": _header(
        "The body's entity tag: every worker gives the same one for the same state",
        {"type": "string", "pattern": '^"[0-9a-f]{24}"$'},
    ),
}
# A poll sends back the tag it holds; an answer that would be the same is a bodiless 304.
IF_NONE_MATCH = {
    "name": "If-None-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": "The `ETag` of the last answer: 304 when the state has not changed",
}
NOT_MODIFIED = {
    "description": "Unchanged since the `ETag` sent in `If-None-Match`: no body",
    "headers": {name: _ref(name, "headers") for name in ("X-Served-By", "X-Request-ID", "ETag")},
}
EVERY_RESPONSE = ("X-Served-By", "X-Request-ID")


def _answer(
    description: str, schema: Schema, *headers: str, media: str = JSON, example: Any = None
) -> Schema:
    """A response with a body and headers; every response carries `EVERY_RESPONSE`."""
    names = (*EVERY_RESPONSE, *headers)
    content: Schema = {"schema": schema}
    if example is not None:
        content["example"] = example
    return {
        "description": description,
        "headers": {name: _ref(name, "headers") for name in names},
        "content": {media: content},
    }


def _error(
    description: str, *codes: str, headers: Sequence[str] = (), detail: str | None = None
) -> Schema:
    """An error answer: `{"error": one of codes, "detail": text}`, its example the first
    code with `detail` when given."""
    schema = {"allOf": [_ref("Error"), {"properties": {"error": {"enum": list(codes)}}}]}
    example = None if detail is None else {"error": codes[0], "detail": detail}
    return _answer(description, schema, *headers, example=example)


# -- Examples ------------------------------------------------------------------

EXAMPLE_ID = "scan_3f9c2a7d5e1b4c8f9a0d6e2b7c1f4a93"
EXAMPLE_STRATEGIES = ("momentum", "rsi_reversal")
EXAMPLE_SYMBOLS = ("BTC-USD", "ETH-USD")


def _example_scan(status: str, completed: int, found: int, done: bool) -> Schema:
    """A scan's status body, two strategies, as the app renders it."""
    second = "ok" if completed == 2 else "running"
    return {
        "scan_id": EXAMPLE_ID,
        "status": status,
        "progress": {
            "strategies_completed": completed,
            "total_strategies": 2,
            "percentage": 50.0 * completed,
            "opportunities_found_so_far": found,
        },
        "created_at": "2025-03-14T09:26:53.589Z",
        "updated_at": "2025-03-14T09:26:54.112Z" if done else "2025-03-14T09:26:53.901Z",
        "completed_at": "2025-03-14T09:26:54.112Z" if done else None,
        "strategies": {"momentum": "ok", "rsi_reversal": second},
    }


SCANNING = _example_scan("scanning", 1, 1, done=False)
COMPLETE = _example_scan("complete", 2, 1, done=True) | {"expires_at": "2025-03-14T10:26:54.112Z"}
ASKED = {"strategies": list(EXAMPLE_STRATEGIES), "symbols": 2, "timeframe": "1h"}
EXAMPLE_STARTED = {
    "scan_id": EXAMPLE_ID,
    "status": "queued",
    "status_url": f"{API}/opportunities/status/{EXAMPLE_ID}",
    "results_url": f"{API}/opportunities/results/{EXAMPLE_ID}",
}
EXAMPLE_RESULTS = {
    "scan_id": EXAMPLE_ID,
    "status": "complete",
    "opportunities": [
        {
            "symbol": "ETH-USD",
            "strategy": "momentum",
            "side": "long",
            "score": 0.82,
            "entry_price": 3412.5,
            "stop_loss": 3301.2,
            "take_profit": 3635.1,
            "expected_return": 0.0652,
            "risk_reward": 2.0,
            "timeframe": "1h",
            "signal": "20-bar return +6.1% (z +2.3), price above a rising EMA(50)",
            "as_of": "2025-03-14T09:00:00Z",
        }
    ],
    "strategy_performance": {
        "momentum": {"status": "ok", "opportunities": 1, "duration_ms": 41},
        "rsi_reversal": {"status": "ok", "opportunities": 0, "duration_ms": 37},
    },
    "metadata": {
        "total_strategies": 2,
        "strategies_completed": 2,
        "symbols_scanned": 2,
        "timeframe": "1h",
        "started_at": "2025-03-14T09:26:53.601Z",
        "completed_at": "2025-03-14T09:26:54.112Z",
        "duration_ms": 511,
        "opportunities_total": 1,
        "market": {
            "source": "synthetic",
            "series": 2,
            "fetched": 2,
            "cached": 0,
            "shared": 0,
            "failed": 0,
        },
    },
}


EXAMPLE_PARTIAL = {
    **SCANNING,
    "partial": True,
    "opportunities": EXAMPLE_RESULTS["opportunities"],
    "strategy_performance": {
        "momentum": {"status": "ok", "opportunities": 1, "duration_ms": 41},
    },
    "metadata": {"total_strategies": 2, "strategies_completed": 1, "opportunities_total": 1},
}


def _discover_example(strategies: Sequence[str] | None, symbols: Sequence[str] | None) -> Schema:
    """A discover body this app accepts: the README's names where the app has them,
    else its first ones; symbols left out (all of them) when the app's are unknown."""

    def pick(preferred: Sequence[str], names: Sequence[str]) -> list[str]:
        return [n for n in preferred if n in names] or list(names[:2])

    body: Schema = {"strategies": pick(EXAMPLE_STRATEGIES, strategies or EXAMPLE_STRATEGIES)}
    if symbols:
        body["symbols"] = pick(EXAMPLE_SYMBOLS, symbols)
    return body | {"timeframe": DEFAULT_TIMEFRAME}


# -- Schemas -------------------------------------------------------------------


def _names(names: Sequence[str] | None, cap: int) -> Schema:
    """A list of names: any strings when `names` is None, else only those."""
    item: Schema = {"type": "string"} if names is None else {"type": "string", "enum": [*names]}
    return {"type": "array", "items": item, "minItems": 1, "maxItems": cap}


def _discover_request(strategies: Sequence[str] | None, symbols: Sequence[str] | None) -> Schema:
    optional = {
        "strategies": _names(strategies, MAX_STRATEGIES),
        "symbols": _names(symbols, MAX_SYMBOLS),
        "timeframe": TIMEFRAME | {"default": DEFAULT_TIMEFRAME},
        "force_refresh": {"type": "boolean", "default": False},
    }
    return {
        "description": "Omit `strategies` or `symbols` to scan with all of them.",
        **_closed({}, optional),
    }


def _discovered(status: Schema, flag: str, *, always: bool) -> Schema:
    """A discover answer; `flag` (`deduplicated` or `cached`) is only ever `true`."""
    fields = {
        "scan_id": SCAN_ID,
        "status": status,
        "status_url": _scan_url("status"),
        "results_url": _scan_url("results"),
    }
    flagged = {flag: {"const": True}}
    return _closed(fields | flagged, None) if always else _closed(fields, flagged)


PROGRESS = _closed(
    {
        "strategies_completed": COUNT,
        "total_strategies": {"type": "integer", "minimum": 1},
        "percentage": {"type": "number", "minimum": 0, "maximum": 100},
        "opportunities_found_so_far": COUNT,
    }
)
ERROR_TEXT: Schema = {"type": "string", "minLength": 1}
# A running scan has no `completed_at` and no `error`; a finished one has
# `completed_at`, and an `error` unless it is complete.
STATUS_FIELDS: Schema = {
    "scan_id": SCAN_ID,
    "status": {"type": "string", "enum": RUNNING + FINISHED},
    "progress": _ref("Progress"),
    "created_at": STAMP,
    "updated_at": STAMP,
    "completed_at": {"oneOf": [STAMP, {"type": "null"}]},
}


# Each strategy's state: `pending` (waiting for its market series or a thread),
# `running`, then its outcome; what a scan that ended never finished is `cancelled`.
# Absent only from records written before states were kept.
def _states(*states: str) -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string", "enum": list(states)}}


STATES = _states(*STRATEGY_STATES)
RUNNING_STATES = _states("pending", "running", "ok", "error", "skipped")
FINISHED_STATES = _states("ok", "error", "skipped", "cancelled")
# A finished scan says when its retention ends (`expires_at`); a listed scan also
# what it asked for (`request`).
STATUS_OPTIONAL: Schema = {"error": ERROR_TEXT, "expires_at": STAMP, "strategies": STATES}
REQUEST_SUMMARY = _closed(
    {
        "strategies": {"type": "array", "items": {"type": "string"}},
        "symbols": {"type": "integer", "minimum": 1},
        "timeframe": TIMEFRAME,
    }
)
SCAN_STATUS = _closed(
    STATUS_FIELDS,
    STATUS_OPTIONAL,
    allOf=[
        _when(
            RUNNING,
            {
                "properties": {
                    "completed_at": {"type": "null"},
                    "error": False,
                    "expires_at": False,
                    "strategies": RUNNING_STATES,
                }
            },
        ),
        _when(
            ["complete"],
            {
                "properties": {
                    "completed_at": STAMP,
                    "error": False,
                    "strategies": _states("ok", "error", "skipped"),
                }
            },
        ),
        _when(
            ["failed", "cancelled"],
            {
                "required": ["error"],
                "properties": {"completed_at": STAMP, "strategies": FINISHED_STATES},
            },
        ),
    ],
)
NUMBER: Schema = {"type": "number"}
OPPORTUNITY = _closed(
    {
        "symbol": {"type": "string"},
        "strategy": {"type": "string"},
        "side": {"type": "string", "enum": ["long", "short"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "entry_price": NUMBER,
        "stop_loss": NUMBER,
        "take_profit": NUMBER,
        "expected_return": NUMBER,
        "risk_reward": NUMBER,
        "timeframe": TIMEFRAME,
        "signal": {"type": "string"},
        "as_of": STAMP,
    }
)
# A skipped strategy says why (`reason`); one that failed says how (`error`).
STRATEGY_PERFORMANCE = _closed(
    {
        "status": {"type": "string", "enum": ["ok", "error", "skipped"]},
        "opportunities": COUNT,
        "duration_ms": COUNT,
    },
    {"error": {"type": "string"}, "reason": {"type": "string"}},
    allOf=[
        _when(["ok"], {"properties": {"error": False, "reason": False}}),
        _when(["error"], {"required": ["error"], "properties": {"reason": False}}),
        _when(["skipped"], {"required": ["reason"], "properties": {"error": False}}),
    ],
)
METADATA = _closed(
    {
        "total_strategies": {"type": "integer", "minimum": 1},
        "strategies_completed": COUNT,
        "symbols_scanned": COUNT,
        "timeframe": TIMEFRAME,
        "started_at": STAMP,
        "completed_at": STAMP,
        "duration_ms": {"type": "integer"},
        "opportunities_total": COUNT,
    },
    # How the owner that finished the scan had its market series (every distinct
    # series the strategies it ran declared): absent on results stored before it.
    {
        "market": _closed(
            {
                "source": {"type": "string"},
                "series": COUNT,
                "fetched": COUNT,
                "cached": COUNT,
                "shared": COUNT,
                "failed": COUNT,
            }
        )
    },
)
# A running scan's results so far: its status, and what the strategies recorded in
# Redis found. While Redis cannot be read, the owner answers with the status alone.
PARTIAL_RESULTS = _closed(
    {
        "scan_id": SCAN_ID,
        "status": {"type": "string", "enum": RUNNING},
        "progress": _ref("Progress"),
        "created_at": STAMP,
        "updated_at": STAMP,
        "completed_at": {"type": "null"},
    },
    {
        "strategies": RUNNING_STATES,
        "partial": {"const": True},
        "opportunities": {"type": "array", "items": _ref("Opportunity")},
        "strategy_performance": {
            "type": "object",
            "additionalProperties": _ref("StrategyPerformance"),
        },
        "metadata": _closed(
            {
                "total_strategies": {"type": "integer", "minimum": 1},
                "strategies_completed": COUNT,
                "opportunities_total": COUNT,
            }
        ),
    },
)
RESULTS = _closed(
    {
        "scan_id": SCAN_ID,
        "status": {"type": "string", "enum": FINISHED},
        "opportunities": {"type": "array", "items": _ref("Opportunity")},
        "strategy_performance": {
            "type": "object",
            "additionalProperties": _ref("StrategyPerformance"),
        },
        "metadata": _ref("ResultsMetadata"),
    },
    {"error": ERROR_TEXT},
    allOf=[
        _when(["complete"], {"properties": {"error": False}}),
        _when(["failed", "cancelled"], {"required": ["error"]}),
    ],
)


def _schemas(strategies: Sequence[str] | None, symbols: Sequence[str] | None) -> dict[str, Schema]:
    named = _closed({"name": {"type": "string"}, "description": {"type": "string"}})
    return {
        "Error": _closed({"error": {"type": "string"}, "detail": {"type": "string"}}),
        "DiscoverRequest": _discover_request(strategies, symbols),
        "Progress": PROGRESS,
        "ScanStatus": SCAN_STATUS,
        "ListedScan": _closed(
            STATUS_FIELDS,
            {**STATUS_OPTIONAL, "request": REQUEST_SUMMARY},
            allOf=SCAN_STATUS["allOf"],
        ),
        "Opportunity": OPPORTUNITY,
        "StrategyPerformance": STRATEGY_PERFORMANCE,
        "ResultsMetadata": METADATA,
        "Results": RESULTS,
        "PartialResults": PARTIAL_RESULTS,
        "StrategyList": _closed({"strategies": {"type": "array", "items": named}}),
        "SymbolList": _closed({"symbols": {"type": "array", "items": {"type": "string"}}}),
        "ScanList": _closed(
            {"scans": {"type": "array", "items": _ref("ListedScan"), "maxItems": MAX_LIST}}
        ),
    }


# -- Responses shared by operations -------------------------------------------------

RESPONSES: dict[str, Schema] = {
    "Unauthorized": _error(
        "No bearer token, or an invalid or expired one (`detail`: `token expired` or "
        "`token invalid: why`)",
        "unauthorized",
        headers=["WWW-Authenticate"],
        detail="a bearer token is required",
    ),
    "Unavailable": _error(
        "Redis cannot be reached, the worker's actors did not answer in time, or the "
        "exchange cannot list its symbols yet",
        "store_unavailable",
        "worker_busy",
        "market_unavailable",
        headers=["Retry-After"],
        detail="the scan store cannot be reached; retry shortly",
    ),
    "StoreUnavailable": _error(
        "Redis cannot be reached",
        "store_unavailable",
        headers=["Retry-After"],
        detail="the scan store cannot be reached; retry shortly",
    ),
    "BadScanId": _error(
        "`scan_id` is not `scan_` and 32 lowercase hex digits",
        "invalid_scan_id",
        detail="scan_id must be 'scan_' and 32 lowercase hex digits",
    ),
    "NotFound": _error(
        "No such scan for this user (or not retained any more)", "not_found", detail="no such scan"
    ),
}
AUTHENTICATED = {"401": _ref("Unauthorized", "responses")}
SCAN_ERRORS = {
    "400": _ref("BadScanId", "responses"),
    **AUTHENTICATED,
    "404": _ref("NotFound", "responses"),
    "503": _ref("Unavailable", "responses"),
}
SCAN_PARAM = {"name": "scan_id", "in": "path", "required": True, "schema": SCAN_ID}
REQUEST_ID_PARAM = {
    "name": "X-Request-ID",
    "in": "header",
    "required": False,
    "description": f"Echoed in the response when it matches `{REQUEST_ID.pattern}`",
    "schema": {"type": "string"},
}


TAGS = [
    {"name": "scans", "description": "Start scans, follow them, fetch their results, cancel them"},
    {"name": "catalogue", "description": "The strategies and symbols a scan may use"},
    {"name": "operations", "description": "Probes, metrics and this document: no token needed"},
]


def _operation(
    tag: str,
    operation_id: str,
    summary: str,
    responses: Schema,
    parameters: Sequence[Schema] = (),
    **more: Any,
) -> Schema:
    """An operation under `tag` (one of `TAGS`); every one takes an optional `X-Request-ID`."""
    return {
        "tags": [tag],
        "operationId": operation_id,
        "summary": summary,
        "parameters": [_ref("RequestId", "parameters"), *parameters],
        "responses": responses,
        **more,
    }


# -- Operations ----------------------------------------------------------------------


def _links() -> Schema:
    """Where a discover answer leads: the scan's status, results and cancellation."""
    by_id = {"scan_id": "$response.body#/scan_id"}
    return {
        name: {"operationId": operation, "parameters": by_id}
        for name, operation in (
            ("status", "scanStatus"),
            ("results", "scanResults"),
            ("cancel", "cancelScan"),
        )
    }


def _discover(example: Schema) -> Schema:
    """Discover, its body's example `example`."""
    started = _answer(
        "Scan registered, or an identical running one joined (`deduplicated`); "
        "`Retry-After` says when to poll",
        _discovered({"type": "string", "enum": RUNNING}, "deduplicated", always=False),
        "Location",
        "Retry-After",
        example=EXAMPLE_STARTED,
    )
    reused = _answer(
        "An identical complete scan reused (`cached`); `force_refresh` starts a new one",
        _discovered({"const": "complete"}, "cached", always=True),
        "Location",
        example=EXAMPLE_STARTED | {"status": "complete", "cached": True},
    )
    invalid = [
        *("invalid_json", "invalid_body", "unknown_field", "invalid_field", "too_many"),
        *("unknown_strategy", "unknown_symbol", "invalid_timeframe"),
    ]
    responses = {
        "200": reused | {"links": _links()},
        "202": started | {"links": _links()},
        "400": _error("The body is not a valid discover request", *invalid),
        **AUTHENTICATED,
        "408": _error("The body arrived too slowly", "request_timeout"),
        "413": _error("The body is over 64 KiB", "payload_too_large"),
        "415": _error("The body is not `application/json`", "unsupported_media_type"),
        "429": _error(
            "Over the discover rate, or too many queued and running scans of this user",
            "rate_limited",
            "too_many_active_scans",
            headers=["Retry-After"],
        ),
        "503": _ref("Unavailable", "responses"),
    }
    content = {JSON: {"schema": _ref("DiscoverRequest"), "example": example}}
    body = {"required": False, "content": content}
    summary = "Start a scan, join an identical running one, or reuse a finished one"
    return _operation("scans", "discover", summary, responses, requestBody=body)


def _scan_status(
    description: str, example: Schema, statuses: Sequence[str] | None = None
) -> Schema:
    """A scan's status body, tagged; its `status` is one of `statuses` when given."""
    schema: Schema = _ref("ScanStatus")
    if statuses is not None:
        schema = {"allOf": [schema, {"properties": {"status": {"enum": list(statuses)}}}]}
    return _answer(description, schema, "X-Scan-Source", "ETag", example=example)


def _status() -> Schema:
    responses = {
        "200": _scan_status(
            "The scan's status and progress (`Retry-After` while it runs)", SCANNING
        ),
        "304": NOT_MODIFIED,
        **SCAN_ERRORS,
    }
    summary = "A scan's status and progress"
    parameters = [SCAN_PARAM, IF_NONE_MATCH]
    return _operation("scans", "scanStatus", summary, responses, parameters=parameters)


def _results() -> Schema:
    responses = {
        "200": _answer(
            "The ranked results",
            _ref("Results"),
            "X-Scan-Source",
            "ETag",
            example=EXAMPLE_RESULTS,
        ),
        "202": _answer(
            "Still queued or scanning: what it found so far (`partial`), and `Retry-After`",
            _ref("PartialResults"),
            "X-Scan-Source",
            "ETag",
            "Retry-After",
            example=EXAMPLE_PARTIAL,
        ),
        "304": NOT_MODIFIED,
        **SCAN_ERRORS,
    }
    summary = "A finished scan's ranked results (202 with the status while it runs)"
    parameters = [SCAN_PARAM, IF_NONE_MATCH]
    return _operation("scans", "scanResults", summary, responses, parameters=parameters)


def _cancel() -> Schema:
    cancelled = COMPLETE | {"status": "cancelled", "error": "cancelled by request"}
    responses = {
        "200": _scan_status(
            "Finished: `cancelled`, or `complete` or `failed` when it finished first",
            cancelled,
            FINISHED,
        ),
        "202": _scan_status(
            "Cancellation requested: it stops at its next strategy boundary", SCANNING, RUNNING
        ),
        **SCAN_ERRORS,
        "409": _error("The scan already finished", "already_finished"),
    }
    summary = "Cancel a queued or running scan at its next strategy boundary"
    return _operation("scans", "cancelScan", summary, responses, parameters=[SCAN_PARAM])


def _list_scans() -> Schema:
    limit = {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": 50},
    }
    responses = {
        "200": _answer(
            "The scans, newest first",
            _ref("ScanList"),
            example={"scans": [SCANNING | {"request": ASKED}, COMPLETE | {"request": ASKED}]},
        ),
        "400": _error(f"`limit` is not an integer from 1 to {MAX_LIST}", "bad_request"),
        **AUTHENTICATED,
        "503": _ref("StoreUnavailable", "responses"),
    }
    summary = "The caller's retained scans, newest first"
    return _operation("scans", "listScans", summary, responses, parameters=[limit])


def _catalogue(operation_id: str, summary: str, schema: str, example: Schema) -> Schema:
    responses = {"200": _answer(summary, _ref(schema), example=example), **AUTHENTICATED}
    return _operation("catalogue", operation_id, summary, responses)


def _public(operation_id: str, summary: str, responses: Schema) -> Schema:
    return _operation("operations", operation_id, summary, responses, security=[])


def _probes() -> dict[str, Schema]:
    alive = _closed({"status": {"const": "ok"}, "worker": WORKER})
    ready = _closed({"status": {"const": "ready"}})
    metrics = _answer("Prometheus text exposition", {"type": "string"}, media="text/plain")
    document = {"type": "object", "required": ["openapi", "info", "paths"]}
    page = _answer("Swagger UI on this document", {"type": "string"}, media="text/html")
    unavailable = _ref("StoreUnavailable", "responses")
    alive_example = {"status": "ok", "worker": "web-1:4242"}
    return {
        "/healthz": _public(
            "health",
            "The process is alive",
            {"200": _answer("Alive", alive, example=alive_example)},
        ),
        "/readyz": _public(
            "ready",
            "Redis answers",
            {"200": _answer("Ready", ready, example={"status": "ready"}), "503": unavailable},
        ),
        "/metrics": _public(
            "metrics", "Prometheus metrics of every worker of this server", {"200": metrics}
        ),
        "/openapi.json": _public(
            "openapi", "This document", {"200": _answer("The OpenAPI document", document)}
        ),
        "/docs": _public("docs", "This document in Swagger UI, to read and try", {"200": page}),
    }


STRATEGY_LIST_EXAMPLE = {
    "strategies": [
        {
            "name": "momentum",
            "description": "Rides a 24-bar move that is large for the symbol's volatility, "
            "with the EMA(50).",
        },
        {
            "name": "rsi_reversal",
            "description": "Buys RSI(14) crossing back above 30 from oversold; "
            "sells it crossing back below 70.",
        },
    ]
}


def _paths(strategies: Sequence[str] | None, symbols: Sequence[str] | None) -> dict[str, Schema]:
    api = {
        routes.DISCOVER: {"post": _discover(_discover_example(strategies, symbols))},
        routes.STATUS: {"get": _status()},
        routes.RESULTS: {"get": _results()},
        routes.SCANS: {"get": _list_scans()},
        routes.SCAN: {"delete": _cancel()},
        routes.STRATEGIES: {
            "get": _catalogue(
                "listStrategies",
                "The strategies a scan may run",
                "StrategyList",
                STRATEGY_LIST_EXAMPLE,
            )
        },
        routes.SYMBOLS: {
            "get": _catalogue(
                "listSymbols",
                "The symbols the market data serves",
                "SymbolList",
                {"symbols": list(EXAMPLE_SYMBOLS)},
            )
        },
    }
    return api | {path: {"get": op} for path, op in _probes().items()}


DESCRIPTION = """Opportunity scans: start one, poll its status, fetch its results.

Errors are `{"error": code, "detail": text}`. Beyond the answers listed per
operation, a method a path does not list is answered `405` with `Allow` (`401`
first where the path needs a token), and an unknown path `404`. Every answer
carries `X-Served-By` and `X-Request-ID`."""


@cache
def openapi_document(
    strategies: tuple[str, ...] | None = None, symbols: tuple[str, ...] | None = None
) -> bytes:
    """The document; with the app's strategy and symbol names, a discover body lists only those.

    Without them a name is any string, and a body the document calls valid may
    still be answered `400 unknown_strategy` or `unknown_symbol`.
    """
    document = {
        "openapi": "3.1.0",
        "info": {"title": "oppscan", "version": "1", "description": DESCRIPTION},
        "components": {
            "schemas": _schemas(strategies, symbols),
            "responses": RESPONSES,
            "headers": HEADERS,
            "parameters": {"RequestId": REQUEST_ID_PARAM},
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT whose `sub` is the user: `oppscan token --user demo`",
                }
            },
        },
        "security": [{"bearer": []}],
        "tags": TAGS,
        "paths": _paths(strategies, symbols),
    }
    return json.dumps(document, indent=1).encode()
