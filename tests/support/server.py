"""A real gunicorn running oppscan, started and stopped by a test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from oppscan.auth import issue_token
from oppscan.processes import spawn, terminate
from oppscan.storage import free_port

SECRET = "e2e-secret-0123456789abcdef0123456789"


@dataclass
class GunicornServer:
    redis_url: str
    directory: Path
    workers: int = 4
    threads: int = 4
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"gunicorn-{self.port}.log"

    def token(self, user: str) -> str:
        return issue_token(SECRET, user, 3600)

    def start(self, timeout: float = 30.0) -> GunicornServer:
        env = {
            **os.environ,
            "OPPSCAN_REDIS_URL": self.redis_url,
            "OPPSCAN_BIND": f"127.0.0.1:{self.port}",
            "OPPSCAN_WORKERS": str(self.workers),
            "OPPSCAN_THREADS": str(self.threads),
            "OPPSCAN_SECRET": SECRET,
            "OPPSCAN_DATA_DIR": str(self.directory / f"data-{self.port}"),
            **self.env,
        }
        argv = [sys.executable, "-m", "gunicorn", "-c", "python:oppscan.gunicorn_config"]
        self.process = spawn([*argv, *self.args], self.log_path, env)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill_all()  # never leave a half-started server behind
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        process, self.process = self.process, None
        if not terminate(process, timeout):
            raise AssertionError(f"gunicorn did not stop on SIGTERM; see {self.log_path}")

    @property
    def master_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill_all(self) -> None:
        """SIGKILL the master and its workers at once, as a lost host would."""
        process, self.process = self.process, None
        if process is not None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_workers(self, deadline: float) -> None:
        """Until every worker has answered once (new connection each time), so that
        tests start with all of them accepting."""
        seen: set[str] = set()
        while len(seen) < self.workers and time.monotonic() < deadline:
            resp = requests.get(f"{self.url}/healthz", headers={"Connection": "close"}, timeout=2)
            seen.add(resp.headers.get("X-Served-By", ""))
        assert len(seen) >= self.workers, f"only {len(seen)} of {self.workers} workers answered"

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self._wait_workers(deadline)
            except requests.RequestException:
                pass  # not listening yet, or a worker still booting
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"gunicorn not ready within {timeout}s")
