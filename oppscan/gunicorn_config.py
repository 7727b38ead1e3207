"""gunicorn settings and hooks for oppscan.

`oppscan serve` and `gunicorn -c gunicorn.conf.py` both use this module. The
master only locks the data dir, checks the configuration and starts the
embedded Redis (when no Redis is configured); actors, threads and
connections are created in each worker, after fork.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

# Nothing here may load prometheus_client: the master must not import it
# before the metrics folder is exported (it picks its mode on import).
from oppscan.processes import children
from oppscan.settings import Settings, export_metrics_dir, export_redis_url
from oppscan.startup import DataDirLock, StartError, check, ready_text

_settings = Settings.from_env()
_metrics_dir = _settings.metrics_dir or _settings.data_dir.resolve() / "metrics"
_embedded: Any = None  # the EmbeddedRedis, when this master started one
_lock = DataDirLock(_settings.data_dir)

# -- Server socket: where to listen ------------------------------------------
bind = [_settings.bind]

# -- Workers: processes and threads per process ------------------------------
workers = _settings.workers
worker_class = "oppscan.gunicorn_worker.Worker"  # gthread, with safe signal handlers
threads = _settings.threads
timeout = 30  # a worker silent this long is restarted
graceful_timeout = 20  # time a stopping worker gets to hand its scans off
keepalive = 5

# -- Application: built in each worker after fork ------------------------------
wsgi_app = "oppscan.http.app:get_app()"
preload_app = False

# -- Control: no runtime control socket (several servers may share a host) ----
control_socket_disable = True

# -- Logging -------------------------------------------------------------------
proc_name = "oppscan"
errorlog = "-"
loglevel = _settings.log_level
logger_class = "oppscan.gunicorn_logging.JsonLogger"  # JSON lines, as the workers write


def on_starting(server: Any) -> None:
    """Before any fork: the data dir's lock, a fresh metrics folder, every check that
    can fail a start (one line and exit status 1), then the embedded Redis if needed."""
    global _embedded
    try:
        _lock.acquire()
        _fresh_metrics_dir()
        check(_settings, server.address)
    except StartError as exc:
        server.log.error(f"oppscan: {exc}")  # one event, in the JSON stream
        raise SystemExit(1) from None
    if _settings.embedded:
        from oppscan.storage import EmbeddedRedis

        _embedded = EmbeddedRedis(Path(_settings.data_dir) / "redis").start()
        export_redis_url(_embedded.url)
        server.log.info("embedded redis-server pid %s at %s", _embedded.pid, _embedded.url)


def _fresh_metrics_dir() -> None:
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in _metrics_dir.glob("*.db"):  # a previous run's workers
        stale.unlink()
    export_metrics_dir(_metrics_dir)


def when_ready(server: Any) -> None:
    """The URL, data dir, secret and demo token go to stdout, for the user (and for
    `| grep`); the log stream (stderr) never holds a token."""
    print(ready_text(_settings), file=sys.stdout, flush=True)


def post_fork(server: Any, worker: Any) -> None:
    """Signals that reach the new worker before it has its own handlers are replayed."""
    worker.inherited_signals = server.SIG_QUEUE


def worker_exit(server: Any, worker: Any) -> None:
    """Hand the worker's scans off and stop its actors (pykka threads would hang it).

    After a quick stop (Ctrl-C) the worker ends at once: its scans' leases
    are released, and waiting for their running strategies is what a quick
    stop must not do.
    """
    from oppscan.http.app import owned_scans, shutdown

    scans = owned_scans()
    if scans:
        server.log.info("stopping: %s", _handing_off(scans, worker.quick))
    shutdown(lambda: bool(worker.quick))
    server.log.info("worker %s stopped its scans", worker.pid)
    if worker.quick:
        _exit_now()


def _exit_now() -> None:
    """End a worker whose scans are handed off, without waiting for the strategies
    still running on its threads or in its child processes: nobody needs them."""
    for child in children(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    logging.shutdown()
    sys.stderr.flush()
    os._exit(0)


def _handing_off(scans: int, quick: bool) -> str:
    running = f"handing off {scans} running scan{'s' if scans != 1 else ''}"
    if quick:
        return running
    wait = f"{_settings.handoff_timeout:g} s"
    return f"{running}, waiting up to {wait} for their strategies (Ctrl-C: at once)"


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: its live gauges stop counting, its totals go to the archives."""
    from oppscan.metrics import retire

    try:
        folded = retire(worker.pid, str(_metrics_dir))
    except Exception:  # raised here, it would stop the master (reap_workers lets it through)
        server.log.exception("could not retire the metrics of worker %s", worker.pid)
        return
    if folded is None:
        server.log.warning("metrics of worker %s not folded yet: scrapes busy", worker.pid)


def on_exit(server: Any) -> None:
    if _embedded is not None:
        server.log.info("stopping embedded redis-server pid %s", _embedded.pid)
        _embedded.stop()
    _lock.release()
