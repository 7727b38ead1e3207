"""Turning a discover body into ScanParams, or a clear 400."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import falcon

from oppscan.http.errors import ApiError, bad_request
from oppscan.market import TIMEFRAMES
from oppscan.model import ScanParams, is_scan_id

DEFAULT_TIMEFRAME = "1h"
MAX_STRATEGIES = 64
MAX_SYMBOLS = 500
FIELDS = frozenset({"strategies", "symbols", "timeframe", "force_refresh"})


@dataclass(frozen=True)
class DiscoverBody:
    params: ScanParams
    force_refresh: bool


def read_json_object(
    req: falcon.Request, limit: int, read_timeout: float | None = None
) -> dict[str, Any]:
    """The body as a JSON object, at most `limit` bytes (413 beyond, 400 if not JSON).

    With `read_timeout`, a client that sends its body too slowly gets a 408
    instead of holding a worker thread.
    """
    if req.content_length is not None and req.content_length > limit:
        raise _too_large(limit)
    media = (req.content_type or falcon.MEDIA_JSON).split(";")[0].strip().lower()
    if media != falcon.MEDIA_JSON:
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = _read(req, limit + 1, read_timeout)
    if len(raw) > limit:
        raise _too_large(limit)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise bad_request("invalid_json", f"the body is not valid JSON: {_reason(exc)}") from None
    if not isinstance(body, dict):
        raise bad_request("invalid_body", "the body must be a JSON object")
    return body


def parse_discover(
    body: dict[str, Any], strategies: Collection[str], symbols: Sequence[str]
) -> DiscoverBody:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise bad_request("unknown_field", f"unknown field(s): {', '.join(unknown)}")
    chosen = _names(body, "strategies", strategies, MAX_STRATEGIES) or tuple(sorted(strategies))
    wanted = _names(body, "symbols", symbols, MAX_SYMBOLS) or tuple(symbols)
    timeframe = body.get("timeframe", DEFAULT_TIMEFRAME)
    if timeframe not in TIMEFRAMES:
        raise bad_request("invalid_timeframe", f"timeframe must be one of {', '.join(TIMEFRAMES)}")
    force = body.get("force_refresh", False)
    if not isinstance(force, bool):
        raise bad_request("invalid_field", "force_refresh must be true or false")
    return DiscoverBody(ScanParams(chosen, wanted, timeframe), force)


def _read(req: falcon.Request, size: int, timeout: float | None) -> bytes:
    sock = req.env.get("gunicorn.socket")
    if timeout is None or sock is None:
        return _read_body(req, size)
    before = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        return _read_body(req, size)
    finally:
        sock.settimeout(before)  # the answer is written as gunicorn left the socket


def _read_body(req: falcon.Request, size: int) -> bytes:
    try:
        data: bytes = req.bounded_stream.read(size)
    except TimeoutError:
        raise ApiError(408, "request_timeout", "the body arrived too slowly") from None
    return data


def check_scan_id(scan_id: str) -> str:
    if not is_scan_id(scan_id):
        raise bad_request("invalid_scan_id", "scan_id must be 'scan_' and 32 lowercase hex digits")
    return scan_id


def _names(body: dict[str, Any], field: str, valid: Collection[str], cap: int) -> tuple[str, ...]:
    if field not in body:
        return ()
    value = body[field]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_request("invalid_field", f"{field} must be a list of strings")
    if len(value) > cap:
        raise bad_request("too_many", f"{field} may list at most {cap} entries")
    if not value:
        raise bad_request("invalid_field", f"{field} must not be empty; omit it for all")
    unknown = sorted({v for v in value if v not in valid})
    if unknown:
        kind = "strategy" if field == "strategies" else "symbol"
        listed = (
            ", ".join(sorted(valid)) if len(valid) <= MAX_STRATEGIES else "see GET /api/v1/symbols"
        )
        raise bad_request(
            f"unknown_{kind}", f"unknown {field}: {', '.join(unknown[:20])}; valid: {listed}"
        )
    return tuple(sorted(set(value)))


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the body may be at most {limit} bytes")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8"
    return str(exc).split(":")[0]
