"""The processes a benchmark starts and stops: gunicorn masters on free loopback ports."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from oppscan.auth import issue_token
from oppscan.processes import GunicornProcess, free_port

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret-0123456789abcdef0123456789"
THREADS = 4  # request threads per worker, oppscan's default, on both sides


def token(user: str) -> str:
    """A bearer token every oppscan server of the benchmark accepts."""
    return issue_token(SECRET, user, 3600)


@dataclass
class Gunicorn(GunicornProcess):
    """A gunicorn master of the benchmark; `connections` spreads that many client
    connections evenly over its workers (None: let the kernel place them)."""

    connections: int | None = None

    def start(self, timeout: float = 30.0) -> Self:
        if self.connections:
            # The kernel gives a burst of new connections to whichever worker
            # accepts first: without a cap, wrk's 16 often all went to one
            # worker, on either side, and a run measured one worker, not two.
            per_worker = -(-self.connections // self.workers)
            self.env["GUNICORN_CMD_ARGS"] = f"--worker-connections={per_worker}"
        return super().start(timeout)


def gunicorn_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", *args]


def oppscan_server(
    name: str,
    redis_url: str,
    directory: Path,
    workers: int,
    **extra: str,
) -> Gunicorn:
    """oppscan as operators run it, but without the access log (its figures are the
    pipeline's; `bench_pipeline.py --access-log` measures what the log adds);
    `extra` adds OPPSCAN_* settings (lower-case names)."""
    port = free_port()
    env = {
        "OPPSCAN_ACCESS_LOG": "0",
        "OPPSCAN_BIND": f"127.0.0.1:{port}",
        "OPPSCAN_REDIS_URL": redis_url,
        "OPPSCAN_WORKERS": str(workers),
        "OPPSCAN_THREADS": str(THREADS),
        "OPPSCAN_SECRET": SECRET,
        "OPPSCAN_DATA_DIR": str(directory / f"data-{name}"),
        **{f"OPPSCAN_{key.upper()}": value for key, value in extra.items()},
    }
    return Gunicorn(directory, workers, env=env, name=name, port=port)


def hello_server(name: str, directory: Path, workers: int) -> Gunicorn:
    """The baseline app with oppscan's gunicorn settings (gthread, keep-alive 5 s)."""
    argv = gunicorn_argv(
        "--worker-class=gthread",
        f"--workers={workers}",
        f"--threads={THREADS}",
        "--keep-alive=5",
        "--timeout=30",
        "--log-level=warning",
        f"--pythonpath={HERE}",
        "hello_app:app",
    )
    return Gunicorn(directory, workers, argv=argv, ready_path="/hello", name=name)
