"""gunicorn settings and hooks for oppscan.

`oppscan serve` and `gunicorn -c gunicorn.conf.py` both use this module. The
master only starts the embedded Redis (when no Redis is configured); actors,
threads and connections are created in each worker, after fork.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

# Only settings here: prometheus_client must not be imported in the master
# before the metrics folder is exported (it picks its mode on import).
from oppscan.settings import Settings, export_metrics_dir, export_redis_url

_settings = Settings.from_env()
_metrics_dir = _settings.metrics_dir or _settings.data_dir.resolve() / "metrics"
_embedded: Any = None  # the EmbeddedRedis, when this master started one

# -- Server socket: where to listen ------------------------------------------
bind = [_settings.bind]

# -- Workers: processes and threads per process ------------------------------
workers = _settings.workers
worker_class = "gthread"
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


def on_starting(server: Any) -> None:
    """Fresh metrics folder, and the embedded Redis when none is configured, before any fork."""
    global _embedded
    _metrics_dir.mkdir(parents=True, exist_ok=True)
    for stale in _metrics_dir.glob("*.db"):  # a previous run's workers
        stale.unlink()
    export_metrics_dir(_metrics_dir)
    if _settings.embedded:
        from oppscan.storage import EmbeddedRedis

        _embedded = EmbeddedRedis(Path(_settings.data_dir) / "redis").start()
        export_redis_url(_embedded.url)
        server.log.info("embedded redis-server pid %s at %s", _embedded.pid, _embedded.url)


def when_ready(server: Any) -> None:
    from oppscan.auth import settings_token

    host = _settings.bind if "://" not in _settings.bind else _settings.bind.split("://", 1)[1]
    token = settings_token(_settings, "demo")
    print(
        f"oppscan ready at http://{host}\ndemo bearer token: {token}", file=sys.stderr, flush=True
    )


def post_fork(server: Any, worker: Any) -> None:
    """SIGUSR1 in a worker prints every thread's stack (stuck actors)."""
    import pykka.debug

    signal.signal(signal.SIGUSR1, pykka.debug.log_thread_tracebacks)


def worker_int(worker: Any) -> None:
    """First SIGINT/SIGQUIT: ignore the next ones, so they cannot cut `worker_exit` short."""
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_IGN)


def worker_exit(server: Any, worker: Any) -> None:
    """Stop the worker's actors; pykka threads are not daemons and would hang it."""
    from oppscan.http.app import shutdown

    worker_int(worker)
    shutdown()
    server.log.info("worker %s stopped its scans", worker.pid)


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
