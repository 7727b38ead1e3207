"""Every mapping of a failure to an HTTP answer, in one place.

Errors are JSON `{"error": code, "detail": text}`. No stack trace reaches a
client: anything unexpected is logged here and answered `500`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import falcon

from oppscan.auth import InvalidToken, TokenExpired
from oppscan.logs import get_logger
from oppscan.market import MarketDataError
from oppscan.service import (
    RateLimited,
    ScanAlreadyFinished,
    ScanNotFound,
    TooManyActiveScans,
    WorkerBusy,
)
from oppscan.storage import StoreUnavailable

log = get_logger("oppscan.http")

CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(falcon.HTTPError):
    """An HTTPError with oppscan's machine-readable code."""

    def __init__(self, status: int, code: str, detail: str, **kwargs: Any) -> None:
        super().__init__(status, title=code, description=detail, **kwargs)


def bad_request(code: str, detail: str) -> ApiError:
    return ApiError(400, code, detail)


def unauthorized(detail: str) -> ApiError:
    """No bearer token at all: the bare challenge, no error code (RFC 6750, section 3.1)."""
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


# What an RFC 6750 error_description may hold: printable ASCII but `"` and `\`.
NOT_IN_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


def _invalid_token(req: falcon.Request, resp: falcon.Response, exc: Exception, _: Any) -> None:
    """A token was sent and refused: say whether it expired or why it is invalid."""
    assert isinstance(exc, InvalidToken)
    reason = "token expired" if isinstance(exc, TokenExpired) else f"token invalid: {exc}"
    detail = NOT_IN_DESCRIPTION.sub("?", reason.replace('"', "'"))
    challenge = f'Bearer error="invalid_token", error_description="{detail}"'
    raise ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    code = exc.title if isinstance(exc, ApiError) else CODES.get(exc.status_code, "error")
    detail = exc.description or exc.title or ""
    resp.content_type = falcon.MEDIA_JSON
    resp.data = json.dumps({"error": code, "detail": detail}).encode()


def _not_found(req: falcon.Request, resp: falcon.Response, exc: Exception, _: Any) -> None:
    raise ApiError(404, "not_found", "no such scan")


def _already_finished(req: falcon.Request, resp: falcon.Response, exc: Exception, _: Any) -> None:
    assert isinstance(exc, ScanAlreadyFinished)
    raise ApiError(409, "already_finished", str(exc))


def _store_unavailable(
    req: falcon.Request, resp: falcon.Response, exc: Exception, params: Any
) -> None:
    assert isinstance(exc, StoreUnavailable)
    # Not a line per request: the breaker logs `store_down` and `store_reconnected`
    # (with these requests counted), the steward `store_restarted`.
    if exc.outage is not None:
        exc.outage.refused_a_request()
    raise ApiError(
        503,
        "store_unavailable",
        "the scan store cannot be reached; retry shortly",
        headers={"Retry-After": str(round(exc.retry_after))},
    )


def _too_many(req: falcon.Request, resp: falcon.Response, exc: Exception, _: Any) -> None:
    assert isinstance(exc, TooManyActiveScans)
    raise ApiError(429, "too_many_active_scans", str(exc), headers={"Retry-After": "5"})


def _rate_limited(req: falcon.Request, resp: falcon.Response, exc: Exception, _: Any) -> None:
    assert isinstance(exc, RateLimited)
    headers = {"Retry-After": str(exc.retry_after)}
    raise ApiError(429, "rate_limited", str(exc), headers=headers)


def _busy(req: falcon.Request, resp: falcon.Response, exc: Exception, _: Any) -> None:
    log.warning("worker_busy", path=req.path, failure_reason=str(exc))
    raise ApiError(
        503, "worker_busy", "the worker is busy; retry shortly", headers={"Retry-After": "1"}
    )


def _market_unavailable(req: falcon.Request, resp: falcon.Response, exc: Exception, _: Any) -> None:
    """The exchange cannot list its symbols now (a discover needs them to check the request)."""
    log.warning("market_unavailable", path=req.path, failure_reason=str(exc))
    raise ApiError(
        503,
        "market_unavailable",
        "the market data source cannot be reached; retry shortly",
        headers={"Retry-After": "5"},
    )


def _unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, _: Any) -> None:
    log.error("unhandled_error", path=req.path, method=req.method, exc_info=exc)
    raise ApiError(500, "internal_error", "an unexpected error occurred")


def install(app: falcon.App[falcon.Request, falcon.Response]) -> None:
    """Register every handler; Falcon picks the most specific one for each exception
    (its own HTTPError handler keeps HTTP errors away from `_unexpected`)."""
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(ScanNotFound, _not_found)
    app.add_error_handler(ScanAlreadyFinished, _already_finished)
    app.add_error_handler(StoreUnavailable, _store_unavailable)
    app.add_error_handler(WorkerBusy, _busy)
    app.add_error_handler(MarketDataError, _market_unavailable)
    app.add_error_handler(TooManyActiveScans, _too_many)
    app.add_error_handler(RateLimited, _rate_limited)
    app.add_error_handler(InvalidToken, _invalid_token)
    app.set_error_serializer(serialize_error)
