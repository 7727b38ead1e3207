"""The processes a benchmark starts and stops: gunicorn masters on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from oppscan.auth import issue_token
from oppscan.processes import spawn, terminate
from oppscan.storage import free_port

HERE = Path(__file__).resolve().parent
SECRET = "bench-secret-0123456789abcdef0123456789"
THREADS = 4  # request threads per worker, oppscan's default, on both sides


def token(user: str) -> str:
    """A bearer token every oppscan server of the benchmark accepts."""
    return issue_token(SECRET, user, 3600)


@dataclass
class Gunicorn:
    """One gunicorn master and its workers, logging to `directory`."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workers: int
    directory: Path
    ready_path: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    # Spread this many client connections evenly over the workers (None: let the kernel).
    connections: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def start(self, timeout: float = 30.0) -> Gunicorn:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        if self.connections:
            # The kernel gives a burst of new connections to whichever worker
            # accepts first: without a cap, wrk's 16 often all went to one
            # worker, on either side, and a run measured one worker, not two.
            per_worker = -(-self.connections // self.workers)
            env["GUNICORN_CMD_ARGS"] = f"--worker-connections={per_worker}"
        argv = [*self.argv, "--bind", f"127.0.0.1:{self.port}"]
        self.process = spawn(argv, self.log_path, env, cwd=self._cwd())
        self._wait_ready(timeout)
        return self

    def _cwd(self) -> Path:
        """An empty folder: gunicorn puts its cwd first on sys.path, and reads a
        gunicorn.conf.py there."""
        cwd = self.directory / "cwd"
        cwd.mkdir(exist_ok=True)
        return cwd

    def stop(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        terminate(process, timeout)

    def worker_pids(self) -> list[int]:
        """The master's live children (gunicorn workers)."""
        if self.process is None:
            return []
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children")
        return [int(p) for p in children.read_text().split()] if children.exists() else []

    def cpu_seconds(self) -> float:
        """User and system CPU time the live workers used so far."""
        total = 0
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log_path}")
            if len(self.worker_pids()) == self.workers and self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready within {timeout}s; see {self.log_path}")

    def _answers(self) -> bool:
        try:
            return requests.get(self.url + self.ready_path, timeout=1).status_code == 200
        except requests.RequestException:
            return False


def gunicorn_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "gunicorn", *args]


def oppscan_server(
    name: str,
    redis_url: str,
    directory: Path,
    workers: int,
    **extra: str,
) -> Gunicorn:
    """oppscan as operators run it; `extra` adds OPPSCAN_* settings (lower-case names)."""
    port = free_port()
    env = {
        "OPPSCAN_BIND": f"127.0.0.1:{port}",
        "OPPSCAN_REDIS_URL": redis_url,
        "OPPSCAN_WORKERS": str(workers),
        "OPPSCAN_THREADS": str(THREADS),
        "OPPSCAN_SECRET": SECRET,
        "OPPSCAN_DATA_DIR": str(directory / f"data-{name}"),
        **{f"OPPSCAN_{key.upper()}": value for key, value in extra.items()},
    }
    argv = gunicorn_argv("-c", "python:oppscan.gunicorn_config")
    return Gunicorn(name, argv, env, workers, directory, "/readyz", port)


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
    return Gunicorn(name, argv, {}, workers, directory, "/hello")
