"""The REST resources: thin, they validate, ask the service and render."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import falcon

from oppscan.http.validation import check_scan_id, parse_discover, read_json_object
from oppscan.metrics import render
from oppscan.model import MIN_POLL_S, ScanSnapshot, entity_tag
from oppscan.service import Answer, ScanService
from oppscan.strategies import Strategy

API = "/api/v1"
MAX_LIST = 100


@dataclass(frozen=True)
class ApiDeps:
    """Everything the resources need; tests pass fakes."""

    service: ScanService
    strategies: Mapping[str, Strategy]
    symbols: Callable[[], Sequence[str]]  # an exchange's universe loads on first use
    ping: Callable[[], bool]
    worker: str
    max_body_bytes: int = 64 * 1024
    body_timeout: float | None = None
    metrics_dir: str | None = None
    symbols_at_start: bool = True  # False: listing them may need an exchange (not at boot)


# Every API route, once: the app routes them, the OpenAPI document describes them.
DISCOVER = f"{API}/opportunities/discover"
STATUS = f"{API}/opportunities/status/{{scan_id}}"
RESULTS = f"{API}/opportunities/results/{{scan_id}}"
SCANS = f"{API}/opportunities/scans"
SCAN = f"{API}/opportunities/scans/{{scan_id}}"
STRATEGIES = f"{API}/strategies"
SYMBOLS = f"{API}/symbols"


def status_url(scan_id: str) -> str:
    return STATUS.format(scan_id=scan_id)


def results_url(scan_id: str) -> str:
    return RESULTS.format(scan_id=scan_id)


def _render_status(
    req: falcon.Request,
    resp: falcon.Response,
    answer: Answer,
    code: int = 200,
    conditional: bool = True,
) -> None:
    """The status body, tagged; a running scan's says when to poll again. A GET
    (`conditional`) whose If-None-Match holds the tag gets a bodiless 304."""
    snapshot = answer.snapshot
    resp.status = code
    resp.set_header("X-Scan-Source", answer.source)
    if not snapshot.status.terminal:
        resp.set_header("Retry-After", str(snapshot.poll_after(datetime.now(UTC))))
    resp.etag = snapshot.status_etag
    if conditional and _unchanged(req, resp, snapshot.status_etag):
        return
    resp.content_type = falcon.MEDIA_JSON
    resp.data = snapshot.status_json


def _render_partial(
    req: falcon.Request, resp: falcon.Response, answer: Answer, body: bytes
) -> None:
    """202: a running scan's results so far, tagged, with when to poll again."""
    resp.status = 202
    resp.set_header("X-Scan-Source", answer.source)
    resp.set_header("Retry-After", str(answer.snapshot.poll_after(datetime.now(UTC))))
    resp.etag = etag = entity_tag(body)
    if not _unchanged(req, resp, etag):
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body


def _unchanged(req: falcon.Request, resp: falcon.Response, etag: str) -> bool:
    """True (and a bodiless 304) when the client holds the tagged answer already.

    If-None-Match compares weakly (RFC 9110 13.1.2): a weak tag of ours matches too.
    A client that sends back the one tag it was given is answered without parsing.
    """
    sent = req.get_header("If-None-Match")
    if sent is None:
        return False
    if sent != f'"{etag}"' and not any(
        tag == "*" or str(tag) == etag for tag in req.if_none_match or ()
    ):
        return False
    resp.status = falcon.HTTP_304
    return True


class Discover:
    def __init__(self, deps: ApiDeps) -> None:
        self._deps = deps

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = read_json_object(req, self._deps.max_body_bytes, self._deps.body_timeout)
        parsed = parse_discover(body, self._deps.strategies, self._deps.symbols())
        found = self._deps.service.discover(req.context.user, parsed.params, parsed.force_refresh)
        media: dict[str, Any] = {
            "scan_id": found.scan_id,
            "status": found.status.value,
            "status_url": status_url(found.scan_id),
            "results_url": results_url(found.scan_id),
        }
        if found.deduplicated:
            media["deduplicated"] = True
        if found.cached:
            media["cached"] = True
        resp.status = 200 if found.cached else 202
        if not found.cached:
            resp.set_header("Retry-After", str(MIN_POLL_S))  # a new scan has no pace yet
        resp.location = status_url(found.scan_id)
        resp.media = media


class Status:
    def __init__(self, deps: ApiDeps) -> None:
        self._service = deps.service

    def on_get(self, req: falcon.Request, resp: falcon.Response, scan_id: str) -> None:
        answer = self._service.status(req.context.user, check_scan_id(scan_id))
        _render_status(req, resp, answer)


class Results:
    def __init__(self, deps: ApiDeps) -> None:
        self._service = deps.service

    def on_get(self, req: falcon.Request, resp: falcon.Response, scan_id: str) -> None:
        answer = self._service.results(req.context.user, check_scan_id(scan_id))
        results, etag = answer.snapshot.results, answer.snapshot.results_etag
        if answer.partial is not None:
            return _render_partial(req, resp, answer, answer.partial)
        if results is None or etag is None:
            return _render_status(req, resp, answer, code=202)
        resp.set_header("X-Scan-Source", answer.source)
        resp.etag = etag
        if not _unchanged(req, resp, etag):
            resp.content_type = falcon.MEDIA_JSON
            resp.data = results
        return None


class Scan:
    def __init__(self, deps: ApiDeps) -> None:
        self._service = deps.service

    def on_delete(self, req: falcon.Request, resp: falcon.Response, scan_id: str) -> None:
        answer = self._service.cancel(req.context.user, check_scan_id(scan_id))
        code = 200 if answer.snapshot.status.terminal else 202
        _render_status(req, resp, answer, code, conditional=False)


class Scans:
    def __init__(self, deps: ApiDeps) -> None:
        self._service = deps.service

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_LIST, default=50)
        scans: list[ScanSnapshot] = self._service.list_scans(req.context.user, limit)
        resp.media = {"scans": [s.listed_body() for s in scans]}


class Strategies:
    def __init__(self, deps: ApiDeps) -> None:
        self._media = {
            "strategies": [
                {"name": name, "description": deps.strategies[name].description}
                for name in sorted(deps.strategies)
            ]
        }

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._media


class Symbols:
    def __init__(self, deps: ApiDeps) -> None:
        self._symbols = deps.symbols

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"symbols": list(self._symbols())}


class Health:
    auth_required = False

    def __init__(self, deps: ApiDeps) -> None:
        self._worker = deps.worker

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok", "worker": self._worker}


class Ready:
    auth_required = False

    def __init__(self, deps: ApiDeps) -> None:
        self._ping = deps.ping

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._ping()
        resp.media = {"status": "ready"}


class Metrics:
    """Prometheus exposition, aggregated over every worker of this server."""

    auth_required = False

    def __init__(self, deps: ApiDeps) -> None:
        self._dir = deps.metrics_dir

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.data, resp.content_type = render(self._dir)


class OpenApi:
    auth_required = False

    def __init__(self, document: bytes) -> None:
        self._document = document

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._document
