"""The OpenAPI 3.1 description of what the app does, served at `/openapi.json`."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from oppscan.market import TIMEFRAMES

JSON = "application/json"
SCAN_ID = {"type": "string", "pattern": "^scan_[0-9a-f]{32}$"}
STAMP = {"type": "string", "format": "date-time"}
STATUSES = ["queued", "scanning", "complete", "failed", "cancelled"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _body(schema: dict[str, Any], description: str, **headers: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        answer["headers"] = headers
    return answer


def _linked(response: dict[str, Any]) -> dict[str, Any]:
    """A discover answer links to the scan's status, results and cancel operations."""
    by_id = {"scan_id": "$response.body#/scan_id"}
    response["links"] = {
        name: {"operationId": operation, "parameters": by_id}
        for name, operation in (
            ("status", "scanStatus"),
            ("results", "scanResults"),
            ("cancel", "cancelScan"),
        )
    }
    return response


def _error(description: str) -> dict[str, Any]:
    return _body(_ref("Error"), description)


SOURCE_HEADER = {
    "description": "Where the answer came from",
    "schema": {"type": "string", "enum": ["actor", "cache", "store"]},
}
RETRY_HEADER = {"description": "Seconds to wait", "schema": {"type": "string"}}
UNAVAILABLE = _body(
    _ref("Error"), "The store or worker is unavailable", **{"Retry-After": RETRY_HEADER}
)
COMMON = {"401": _error("Missing or invalid bearer token"), "503": UNAVAILABLE}
SCAN_PARAM = {"name": "scan_id", "in": "path", "required": True, "schema": SCAN_ID}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "DiscoverRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "strategies": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "symbols": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "timeframe": {"type": "string", "enum": list(TIMEFRAMES), "default": "1h"},
            "force_refresh": {"type": "boolean", "default": False},
        },
    },
    "DiscoverResponse": {
        "type": "object",
        "required": ["scan_id", "status", "status_url", "results_url"],
        "properties": {
            "scan_id": SCAN_ID,
            "status": {"type": "string", "enum": STATUSES},
            "status_url": {"type": "string"},
            "results_url": {"type": "string"},
            "deduplicated": {"type": "boolean"},
            "cached": {"type": "boolean"},
        },
    },
    "Progress": {
        "type": "object",
        "required": [
            "strategies_completed",
            "total_strategies",
            "percentage",
            "opportunities_found_so_far",
        ],
        "properties": {
            "strategies_completed": {"type": "integer", "minimum": 0},
            "total_strategies": {"type": "integer", "minimum": 1},
            "percentage": {"type": "number", "minimum": 0, "maximum": 100},
            "opportunities_found_so_far": {"type": "integer", "minimum": 0},
        },
    },
    "ScanStatus": {
        "type": "object",
        "required": ["scan_id", "status", "progress", "created_at", "updated_at", "completed_at"],
        "properties": {
            "scan_id": SCAN_ID,
            "status": {"type": "string", "enum": STATUSES},
            "progress": _ref("Progress"),
            "created_at": STAMP,
            "updated_at": STAMP,
            "completed_at": {"oneOf": [STAMP, {"type": "null"}]},
            "error": {"type": "string"},
        },
    },
    "Opportunity": {
        "type": "object",
        "required": [
            "symbol",
            "strategy",
            "side",
            "score",
            "entry_price",
            "stop_loss",
            "take_profit",
            "expected_return",
            "risk_reward",
            "timeframe",
            "signal",
            "as_of",
        ],
        "properties": {
            "symbol": {"type": "string"},
            "strategy": {"type": "string"},
            "side": {"type": "string", "enum": ["long", "short"]},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "entry_price": {"type": "number"},
            "stop_loss": {"type": "number"},
            "take_profit": {"type": "number"},
            "expected_return": {"type": "number"},
            "risk_reward": {"type": "number"},
            "timeframe": {"type": "string"},
            "signal": {"type": "string"},
            "as_of": {"type": "string"},
        },
    },
    "StrategyPerformance": {
        "type": "object",
        "required": ["status", "opportunities", "duration_ms"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "error", "skipped"]},
            "opportunities": {"type": "integer", "minimum": 0},
            "duration_ms": {"type": "integer", "minimum": 0},
            "error": {"type": "string"},
            "reason": {"type": "string"},
        },
    },
    "Results": {
        "type": "object",
        "required": ["scan_id", "status", "opportunities", "strategy_performance", "metadata"],
        "properties": {
            "scan_id": SCAN_ID,
            "status": {"type": "string", "enum": ["complete", "failed", "cancelled"]},
            "opportunities": {"type": "array", "items": _ref("Opportunity")},
            "strategy_performance": {
                "type": "object",
                "additionalProperties": _ref("StrategyPerformance"),
            },
            "metadata": {
                "type": "object",
                "required": [
                    "total_strategies",
                    "strategies_completed",
                    "symbols_scanned",
                    "started_at",
                    "completed_at",
                    "duration_ms",
                    "opportunities_total",
                ],
                "properties": {
                    "total_strategies": {"type": "integer"},
                    "strategies_completed": {"type": "integer"},
                    "symbols_scanned": {"type": "integer"},
                    "timeframe": {"type": "string"},
                    "started_at": STAMP,
                    "completed_at": STAMP,
                    "duration_ms": {"type": "integer"},
                    "opportunities_total": {"type": "integer"},
                },
            },
            "error": {"type": "string"},
        },
    },
}


def _paths() -> dict[str, Any]:
    api = "/api/v1"
    return {
        f"{api}/opportunities/discover": {
            "post": {
                "operationId": "discover",
                "summary": "Start a scan, join an identical running one, or reuse a finished one",
                "requestBody": {
                    "required": False,
                    "content": {JSON: {"schema": _ref("DiscoverRequest")}},
                },
                "responses": {
                    "202": _linked(_body(_ref("DiscoverResponse"), "Scan registered (or joined)")),
                    "200": _linked(
                        _body(_ref("DiscoverResponse"), "A finished identical scan reused")
                    ),
                    "400": _error("Invalid body"),
                    "413": _error("Body too large"),
                    "415": _error("Body is not JSON"),
                    **COMMON,
                },
            }
        },
        f"{api}/opportunities/status/{{scan_id}}": {
            "get": {
                "operationId": "scanStatus",
                "summary": "A scan's status and progress",
                "parameters": [SCAN_PARAM],
                "responses": {
                    "200": _body(
                        _ref("ScanStatus"), "The status", **{"X-Scan-Source": SOURCE_HEADER}
                    ),
                    "400": _error("Malformed scan_id"),
                    "404": _error("No such scan for this user"),
                    **COMMON,
                },
            }
        },
        f"{api}/opportunities/results/{{scan_id}}": {
            "get": {
                "operationId": "scanResults",
                "summary": "A finished scan's ranked results (202 with the status while it runs)",
                "parameters": [SCAN_PARAM],
                "responses": {
                    "200": _body(
                        _ref("Results"), "The results", **{"X-Scan-Source": SOURCE_HEADER}
                    ),
                    "202": _body(
                        _ref("ScanStatus"), "Still running", **{"X-Scan-Source": SOURCE_HEADER}
                    ),
                    "400": _error("Malformed scan_id"),
                    "404": _error("No such scan for this user"),
                    **COMMON,
                },
            }
        },
        f"{api}/opportunities/scans": {
            "get": {
                "operationId": "listScans",
                "summary": "The caller's retained scans, newest first",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 50},
                    }
                ],
                "responses": {
                    "200": _body(
                        {
                            "type": "object",
                            "required": ["scans"],
                            "properties": {"scans": {"type": "array", "items": _ref("ScanStatus")}},
                        },
                        "The scans",
                    ),
                    "400": _error("Invalid limit"),
                    **COMMON,
                },
            }
        },
        f"{api}/opportunities/scans/{{scan_id}}": {
            "delete": {
                "operationId": "cancelScan",
                "summary": "Cancel a running scan at its next strategy boundary",
                "parameters": [SCAN_PARAM],
                "responses": {
                    "200": _body(
                        _ref("ScanStatus"), "Cancelled", **{"X-Scan-Source": SOURCE_HEADER}
                    ),
                    "202": _body(
                        _ref("ScanStatus"),
                        "Cancellation requested",
                        **{"X-Scan-Source": SOURCE_HEADER},
                    ),
                    "400": _error("Malformed scan_id"),
                    "404": _error("No such scan for this user"),
                    "409": _error("The scan already finished"),
                    **COMMON,
                },
            }
        },
        f"{api}/strategies": {
            "get": {
                "operationId": "listStrategies",
                "summary": "The strategies a scan may run",
                "responses": {
                    "200": _body(
                        {
                            "type": "object",
                            "required": ["strategies"],
                            "properties": {
                                "strategies": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": ["name", "description"],
                                        "properties": {
                                            "name": {"type": "string"},
                                            "description": {"type": "string"},
                                        },
                                    },
                                }
                            },
                        },
                        "The strategies",
                    ),
                    "401": COMMON["401"],
                },
            }
        },
        f"{api}/symbols": {
            "get": {
                "operationId": "listSymbols",
                "summary": "The symbols the market data source serves",
                "responses": {
                    "200": _body(
                        {
                            "type": "object",
                            "required": ["symbols"],
                            "properties": {
                                "symbols": {"type": "array", "items": {"type": "string"}}
                            },
                        },
                        "The symbols",
                    ),
                    "401": COMMON["401"],
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "The process is alive",
                "security": [],
                "responses": {"200": _body({"type": "object"}, "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "summary": "The store answers",
                "security": [],
                "responses": {"200": _body({"type": "object"}, "Ready"), "503": UNAVAILABLE},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics of every worker of this server",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _body({"type": "object"}, "The OpenAPI document")},
            }
        },
    }


@cache
def openapi_document() -> bytes:
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "oppscan",
            "version": "1",
            "description": "Opportunity scans: start one, poll its status, fetch its results.",
        },
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
    }
    return json.dumps(document, indent=1).encode()
