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

from oppscan.auth import issue_token
from oppscan.settings import Settings, export_redis_url
from oppscan.storage import EmbeddedRedis

_settings = Settings.from_env()
_embedded: EmbeddedRedis | None = None

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
    """Start the embedded Redis before any worker forks, when none is configured."""
    global _embedded
    if _settings.embedded:
        _embedded = EmbeddedRedis(Path(_settings.data_dir) / "redis").start()
        export_redis_url(_embedded.url)
        server.log.info("embedded redis-server pid %s at %s", _embedded.pid, _embedded.url)


def when_ready(server: Any) -> None:
    host = _settings.bind if "://" not in _settings.bind else _settings.bind.split("://", 1)[1]
    token = issue_token(_settings.resolved_secret(), "demo")
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


def on_exit(server: Any) -> None:
    if _embedded is not None:
        server.log.info("stopping embedded redis-server pid %s", _embedded.pid)
        _embedded.stop()
