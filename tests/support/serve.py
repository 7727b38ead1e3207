"""A real `oppscan serve`, started as a terminal starts it: a process group of its own."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from oppscan.processes import children, free_port
from tests.support.polling import poll_until

SERVE = (sys.executable, "-m", "oppscan.cli", "serve")
SECRET = "serve-secret-0123456789abcdef0123456789"


@dataclass
class Serve:
    """`oppscan serve` on a free port with its data under `directory` (embedded Redis
    unless `env` names one); its log (stderr) goes to `log_path`, what it prints for
    the user (stdout) to `out_path`."""

    directory: Path
    env: dict[str, str] = field(default_factory=dict)
    workers: int = 2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "serve.log"

    @property
    def out_path(self) -> Path:
        return self.directory / "serve.out"

    def start(self) -> Serve:
        """Start it; returns at once (see `wait_ready`)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("OPPSCAN_")},
            "OPPSCAN_DATA_DIR": str(self.data_dir),
            "OPPSCAN_SECRET": SECRET,
            "OPPSCAN_WORKERS": str(self.workers),
            **self.env,
        }
        env.pop("REDIS_URL", None)
        with self.log_path.open("ab") as log, self.out_path.open("ab") as out:
            self.process = subprocess.Popen(
                [*SERVE, "--bind", f"127.0.0.1:{self.port}"],
                env=env,
                cwd=self.directory,
                stdout=out,
                stderr=log,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Until `/readyz` answers 200 (one worker is up; others may still be booting)."""
        return poll_until(lambda: self.exited() or self._ready(), timeout)

    def exit_code(self, timeout: float = 30.0) -> int:
        """Wait for the master to end; its exit status."""
        assert self.process is not None
        return self.process.wait(timeout)

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole process group, as a terminal sends it."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)

    def pids(self) -> list[int]:
        """The master and every process under it: workers, their strategy processes,
        the embedded redis-server."""
        assert self.process is not None
        found, frontier = [], [self.process.pid]
        while frontier:
            found += frontier
            frontier = [child for pid in frontier for child in children(pid)]
        return found

    def redis_pids(self) -> list[int]:
        """Every redis-server this server's log says it started."""
        return [int(p) for p in re.findall(r"redis-server pid (\d+) at", self.log_text())]

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def out_text(self) -> str:
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def kill_all(self, pids: list[int]) -> None:
        """SIGKILL whatever of `pids` still runs (a test's cleanup, never its result)."""
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        if self.process is not None and self.process.poll() is None:
            self.process.wait()

    def _ready(self) -> bool:
        try:
            return requests.get(self.url + "/readyz", timeout=1).status_code == 200
        except requests.RequestException:
            return False


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    """The `pids` still running after `timeout` (waits less when all end sooner)."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    return [p for p in pids if alive(p)]
