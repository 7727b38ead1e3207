"""Per-request plumbing: who served it, its request id, who is asking, and CORS."""

from __future__ import annotations

import functools
import random
import re
import time
from collections.abc import Iterable
from typing import Any

import falcon
import falcon.asgi
from falcon.routing import map_http_methods

from oppscan import logs
from oppscan.auth import TokenVerifier
from oppscan.http.errors import unauthorized
from oppscan.metrics import REQUEST_SECONDS, REQUESTS, HotCounter, HotHistogram

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
access = logs.get_logger("oppscan.access")


class RequestContext:
    """Sets `X-Served-By` and `X-Request-ID` on every response, counts it, and (with
    `access_log`) logs it: one `request` event, with its route, status, time and user."""

    def __init__(self, worker: str, access_log: bool = False) -> None:
        self._worker = worker
        self._access_log = access_log

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()
        given = req.get_header("X-Request-ID") or ""
        req.context.request_id = given if REQUEST_ID.match(given) else new_request_id()
        logs.REQUEST_ID.set(req.context.request_id)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        req.context.scan_id = params.get("scan_id")  # named by the access log

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, succeeded: bool
    ) -> None:
        resp.set_header("X-Served-By", self._worker)
        resp.set_header("X-Request-ID", str(req.context.get("request_id", "")))
        started: float = req.context.get("started") or time.perf_counter()
        seconds = time.perf_counter() - started
        route = req.uri_template or "unmatched"
        count, duration = _request_metrics(route, req.method, resp.status_code)
        count.inc()
        duration.observe(seconds)
        if self._access_log:
            user = req.context.get("user")
            access.info(
                "request",
                method=req.method,
                route=route,
                status=resp.status_code,
                duration_ms=round(seconds * 1000, 2),
                user=logs.USER(user) if user else None,
                scan_id=req.context.get("scan_id"),
            )
        logs.REQUEST_ID.set(None)


def new_request_id() -> str:
    """128 random bits in hex: unique, not secret (`random` is reseeded in each forked worker)."""
    return f"{random.getrandbits(128):032x}"


@functools.lru_cache(maxsize=1024)
def _request_metrics(route: str, method: str, status: int) -> tuple[HotCounter, HotHistogram]:
    """The labelled children, looked up once per route, method and status."""
    if method not in METHODS:
        method = "other"  # a client must not be able to invent label values
    count = HotCounter(REQUESTS.labels(route, method, str(status)))
    return count, HotHistogram(REQUEST_SECONDS.labels(route, method))


class Authentication:
    """Requires a valid bearer token unless the resource says `auth_required = False`."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        if not getattr(resource, "auth_required", True):
            return
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("a bearer token is required")
        # InvalidToken and TokenExpired are answered 401 by the handler in errors.py.
        req.context.user = self._verifier.user_of(token.strip())


# What a browser client may read and send across origins.
EXPOSED_HEADERS = (
    *("ETag", "Retry-After", "Location"),
    *("X-Served-By", "X-Scan-Source", "X-Request-ID"),
)
ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-None-Match", "X-Request-ID")


# Its type parameters are the ASGI request and response, for `process_response_async`.
class Cors(falcon.CORSMiddleware[falcon.asgi.Request, falcon.asgi.Response]):
    """Falcon's CORS policy for the configured origins, plus what it leaves out.

    Falcon's sets `Access-Control-Allow-Origin` to an allowed origin, exposes
    `EXPOSED_HEADERS`, and turns a preflight's `Allow` into
    `Access-Control-Allow-Methods`. Added here: `Vary: Origin` on every answer
    (an answer differs by origin, caches must know), and preflights from an
    allowed origin answered `204` in `process_resource`, before `Authentication`
    (a browser sends them without the token), allowing `ALLOWED_HEADERS` rather
    than echoing whatever was asked. A preflight from any other origin goes on as
    an ordinary `OPTIONS` request, and gets no CORS headers.
    """

    def __init__(self, origins: Iterable[str]) -> None:
        self._origins = frozenset(origins)
        super().__init__(allow_origins=self._origins, expose_headers=EXPOSED_HEADERS)

    def process_resource(
        self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict[str, Any]
    ) -> None:
        if self._allowed_preflight(req):
            resp.status = falcon.HTTP_204
            resp.set_header("Allow", ", ".join(sorted(map_http_methods(resource))))
            resp.complete = True  # no other middleware, no responder

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource: object, req_succeeded: bool
    ) -> None:
        super().process_response(req, resp, resource, req_succeeded)
        resp.append_header("Vary", "Origin")
        if self._allowed_preflight(req) and resp.get_header("Access-Control-Allow-Methods"):
            resp.set_header("Access-Control-Allow-Headers", ", ".join(ALLOWED_HEADERS))

    def _allowed_preflight(self, req: falcon.Request) -> bool:
        return (
            req.method == "OPTIONS"
            and req.get_header("Access-Control-Request-Method") is not None
            and req.get_header("Origin") in self._origins
        )
