"""The Falcon app: `create_app(deps)` wires it, `get_app()` builds it from the environment.

`get_app()` runs in a gunicorn worker after fork, so every actor, thread and
Redis connection is created there, never in the master.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

import falcon

from oppscan import logs, metrics
from oppscan.auth import TokenVerifier
from oppscan.http import docs, errors, resources
from oppscan.http.middleware import Authentication, Cors, RequestContext
from oppscan.http.openapi import openapi_document
from oppscan.market import MarketDataError
from oppscan.runtime import Runtime, running_scans, start_runtime, stop_runtime
from oppscan.service import ScanService
from oppscan.settings import Settings

API = resources.API

_lock = threading.Lock()
_runtime: Runtime | None = None


def create_app(
    deps: resources.ApiDeps,
    verifier: TokenVerifier,
    cors_origins: Sequence[str] = (),
    access_log: bool = False,
) -> falcon.App[falcon.Request, falcon.Response]:
    middleware: list[Any] = [RequestContext(deps.worker, access_log), Authentication(verifier)]
    if cors_origins:  # before Authentication: it answers preflights, which carry no token
        middleware.insert(1, Cors(cors_origins))
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    errors.install(app)
    document = openapi_document(tuple(sorted(deps.strategies)), _symbols_now(deps))
    routes: list[tuple[str, object]] = [
        (resources.DISCOVER, resources.Discover(deps)),
        (resources.STATUS, resources.Status(deps)),
        (resources.RESULTS, resources.Results(deps)),
        (resources.SCANS, resources.Scans(deps)),
        (resources.SCAN, resources.Scan(deps)),
        (resources.STRATEGIES, resources.Strategies(deps)),
        (resources.SYMBOLS, resources.Symbols(deps)),
        ("/healthz", resources.Health(deps)),
        ("/readyz", resources.Ready(deps)),
        ("/metrics", resources.Metrics(deps)),
        ("/openapi.json", resources.OpenApi(document)),
        ("/docs", docs.Page()),
    ]
    for path, resource in routes:
        app.add_route(path, resource)
    app.add_sink(docs.Assets(), docs.Assets.PREFIX)
    return app


def _symbols_now(deps: resources.ApiDeps) -> tuple[str, ...] | None:
    """The symbols the document enumerates: a local source's. An exchange's are not
    asked for while the worker boots (a slow exchange must not outlast gunicorn's
    boot timeout); the document then leaves them open, as /symbols lists them."""
    if not deps.symbols_at_start:
        return None
    try:
        return tuple(deps.symbols())
    except MarketDataError:
        return None


def app_from_runtime(runtime: Runtime) -> falcon.App[falcon.Request, falcon.Response]:
    settings = runtime.settings
    deps = resources.ApiDeps(
        service=ScanService(runtime),
        strategies=runtime.strategies,
        symbols=runtime.market.symbols,
        symbols_at_start=not runtime.market.name.startswith("ccxt:"),
        ping=runtime.store.ping,
        worker=runtime.worker,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        metrics_dir=str(settings.metrics_dir) if settings.metrics_dir else None,
    )
    verifier = TokenVerifier.from_settings(settings)
    return create_app(deps, verifier, settings.cors_origins, settings.access_log)


def get_app() -> falcon.App[falcon.Request, falcon.Response]:
    """The WSGI app of this process, starting its runtime on first call."""
    global _runtime
    with _lock:
        if _runtime is None:
            settings = Settings.from_env()
            users = logs.UserField(settings.log_user, settings.available_secret() or "")
            logs.configure(settings.log_level, users)
            _runtime = start_runtime(settings, on_registry_failure=_replace_this_worker)
        return app_from_runtime(_runtime)


def _replace_this_worker() -> None:
    """SIGTERM to this gunicorn worker: it stops gracefully and the master starts another."""
    os.kill(os.getpid(), signal.SIGTERM)


def owned_scans() -> int:
    """How many scans this process runs now (0 before its runtime started)."""
    with _lock:
        return running_scans(_runtime) if _runtime is not None else 0


def shutdown(quick: Callable[[], bool] = lambda: False) -> None:
    """Stop this process's actors and connections (gunicorn's `worker_exit`).

    `quick()` true: release the scans at once rather than let their running
    strategies finish (see `stop_runtime`).
    """
    global _runtime
    with _lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        stop_runtime(runtime, quick=quick)
    metrics.TALLY.flush()  # what this worker counted since the last second
