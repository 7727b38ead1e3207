"""A real gunicorn running oppscan, started and stopped by a test."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from oppscan.auth import issue_token
from oppscan.processes import OPPSCAN_ARGV, GunicornProcess

SECRET = "e2e-secret-0123456789abcdef0123456789"


@dataclass
class GunicornServer:
    redis_url: str
    directory: Path
    workers: int = 4
    threads: int = 4
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    gunicorn: GunicornProcess = field(init=False)

    def __post_init__(self) -> None:
        self.gunicorn = GunicornProcess(
            self.directory, self.workers, argv=(*OPPSCAN_ARGV, *self.args)
        )
        port = self.gunicorn.port
        self.gunicorn.env = {
            "OPPSCAN_REDIS_URL": self.redis_url,
            "OPPSCAN_BIND": f"127.0.0.1:{port}",
            "OPPSCAN_WORKERS": str(self.workers),
            "OPPSCAN_THREADS": str(self.threads),
            "OPPSCAN_SECRET": SECRET,
            "OPPSCAN_DATA_DIR": str(self.directory / f"data-{port}"),
            **self.env,
        }

    @property
    def url(self) -> str:
        return self.gunicorn.url

    @property
    def port(self) -> int:
        return self.gunicorn.port

    @property
    def log_path(self) -> Path:
        return self.gunicorn.log_path

    @property
    def master_pid(self) -> int:
        assert self.gunicorn.process is not None
        return self.gunicorn.process.pid

    def token(self, user: str) -> str:
        return issue_token(SECRET, user, 3600)

    def start(self, timeout: float = 30.0) -> GunicornServer:
        deadline = time.monotonic() + timeout
        self.gunicorn.start(timeout)
        try:
            self._wait_workers(deadline)
        except BaseException:
            self.kill_all()  # never leave a half-started server behind
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if not self.gunicorn.stop(timeout):
            raise AssertionError(f"gunicorn did not stop on SIGTERM; see {self.log_path}")

    def kill_all(self) -> None:
        """SIGKILL the master and its workers at once, as a lost host would."""
        self.gunicorn.kill_all()

    def log_text(self) -> str:
        return self.gunicorn.log_text()

    def _wait_workers(self, deadline: float) -> None:
        """Until every worker has answered ready once (new connection each time), so
        that tests start with all of them accepting and reaching Redis: a worker
        that booted on a starved machine may still fail fast for a moment."""
        seen: set[str] = set()
        while len(seen) < self.workers and time.monotonic() < deadline:
            resp = requests.get(f"{self.url}/readyz", headers={"Connection": "close"}, timeout=2)
            if resp.status_code == 200:
                seen.add(resp.headers.get("X-Served-By", ""))
        assert len(seen) >= self.workers, f"only {len(seen)} of {self.workers} workers were ready"
