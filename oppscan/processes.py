"""Child processes oppscan starts (redis-server, gunicorn): own session, output to a log."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own (a terminal's Ctrl-C reaches only us).

    It is also SIGTERMed when the thread that started it ends, so that even a
    parent that dies without stopping it (a failed start, a SIGKILL) leaves
    nothing running: start it from a thread that lives as long as it should.
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - argv is built by oppscan, never by a client
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # one prctl, no lock: safe in a threaded parent
        )


PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent thread ends (Linux)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def children(pid: int) -> list[int]:
    """The child processes of `pid`, whichever of its threads started them (Linux)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found += [int(child) for child in task.read_text().split()]
    return found


def terminate(process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """SIGTERM, then SIGKILL to its whole session after `timeout`; True if it stopped in time."""
    if process is None or process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return False
    return True


GUNICORN_CONFIG = "python:oppscan.gunicorn_config"
OPPSCAN_ARGV = (sys.executable, "-m", "gunicorn", "-c", GUNICORN_CONFIG)


@dataclass
class GunicornProcess:
    """A gunicorn master and its workers on a free loopback port, in a session of its own.

    It serves oppscan (`OPPSCAN_ARGV`) unless given other arguments, from an
    empty working directory (gunicorn puts its cwd first on `sys.path` and reads
    a `gunicorn.conf.py` found there). It is ready once all `workers` have forked
    and `ready_path` answers 200. Its output goes to `log_path`.
    """

    directory: Path
    workers: int
    env: dict[str, str] = field(default_factory=dict)  # on top of this process's environment
    argv: Sequence[str] = OPPSCAN_ARGV
    ready_path: str = "/readyz"
    name: str = "gunicorn"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}-{self.port}.log"

    def start(self, timeout: float = 30.0) -> Self:
        """Start it and wait until it is ready; on any failure nothing is left running."""
        cwd = self.directory / f"cwd-{self.port}"
        cwd.mkdir(parents=True, exist_ok=True)
        argv = [*self.argv, "--bind", f"127.0.0.1:{self.port}"]
        self.process = spawn(argv, self.log_path, {**os.environ, **self.env}, cwd=cwd)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.kill_all()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM (a graceful stop); True if it ended within `timeout`."""
        process, self.process = self.process, None
        return terminate(process, timeout)

    def kill_all(self) -> None:
        """SIGKILL the master and its workers at once, as a lost host would."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> list[int]:
        """The master's live children: its workers."""
        return children(self.process.pid) if self.process is not None else []

    def cpu_seconds(self) -> float:
        """User and system CPU time the live workers used so far."""
        ticks = 0
        for pid in self.worker_pids():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited while starting:\n{self.log_text()[-3000:]}")
            if len(self.worker_pids()) >= self.workers and self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f} s; see {self.log_path}")

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as reply:  # noqa: S310 - our own loopback URL
                return bool(reply.status == 200)
        except OSError:
            return False
