"""oppscan's gunicorn settings and hooks, with the CPU time of chosen functions counted.

`gunicorn -c python:gunicorn_profiled` with this folder on PYTHONPATH. After
fork, each function in PROBES is wrapped to add up its calls, the CPU time of
the thread that runs it (`time.thread_time`: a wait costs nothing) and its wall
time. A few probes per request cost a few microseconds, unlike a profiler that
times every call. A worker writes `$BENCH_PROFILE_DIR/<pid>.json` when it exits.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from oppscan import gunicorn_config as base

# oppscan's settings and hooks, but for the two hooks defined below.
_OWN = {"post_fork", "worker_exit"}
globals().update({k: v for k, v in vars(base).items() if k[0] != "_" and k not in _OWN})

# (module, class, method), outermost first. A probe whose target is gone is skipped.
PROBES = (
    ("gunicorn.workers.gthread", "ThreadWorker", "handle"),
    ("gunicorn.workers.gthread", "ThreadWorker", "handle_request"),
    ("falcon.app", "App", "__call__"),
    ("oppscan.http.middleware", "RequestContext", "process_request"),
    ("oppscan.http.middleware", "RequestContext", "process_response"),
    ("oppscan.http.middleware", "Authentication", "process_resource"),
    ("oppscan.auth", "TokenVerifier", "user_of"),
    ("oppscan.actors.views", "RegistryView", "resolve"),
    ("oppscan.actors.views", "SnapshotCell", "read"),
    ("oppscan.storage.store", "ScanStore", "read"),
    ("oppscan.model", "ScanSnapshot", "status_body"),
    ("falcon.media.json", "JSONHandler", "serialize"),
    ("pykka._actor", "Actor", "_handle_receive"),
)

_totals: dict[str, list[float]] = {}  # label: [calls, cpu seconds, wall seconds]
_lock = threading.Lock()


def _probe(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    row = _totals.setdefault(label, [0.0, 0.0, 0.0])

    @functools.wraps(fn)
    def probed(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
            with _lock:
                row[0] += 1
                row[1] += cpu
                row[2] += wall

    return probed


def _install() -> None:
    for module_name, class_name, method in PROBES:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            fn = cls.__dict__[method]
        except (ImportError, AttributeError, KeyError):
            continue
        setattr(cls, method, _probe(f"{class_name}.{method}", fn))


def post_fork(server: Any, worker: Any) -> None:
    base.post_fork(server, worker)
    _install()


def worker_exit(server: Any, worker: Any) -> None:
    base.worker_exit(server, worker)
    out = Path(os.environ.get("BENCH_PROFILE_DIR", "."))
    with _lock:
        rows = {k: {"calls": int(v[0]), "cpu": v[1], "wall": v[2]} for k, v in _totals.items()}
    (out / f"{os.getpid()}.json").write_text(json.dumps(rows, indent=1))
