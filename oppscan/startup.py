"""What the gunicorn master checks and holds before it forks any worker.

Whatever can be known wrong before the first worker boots is found here, so
a bad configuration is one line and a non-zero exit rather than a traceback
from every worker after "ready". Nothing here talks to Redis: connections
are made after fork, and a Redis that does not answer yet is no reason not
to start (it may come up later; `/readyz` says 503 until it does). Once it
listens, the master tells the user where, and with which token (`ready_text`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterable
from pathlib import Path

from oppscan.auth import HMAC_ALGORITHMS, settings_token
from oppscan.market import MarketDataError, load_market
from oppscan.settings import PREFIX, Settings

LOCK_NAME = "serve.lock"


class StartError(Exception):
    """Why oppscan cannot start, in one line for the user."""


def check(settings: Settings, addresses: Iterable[object]) -> None:
    """The Redis URL, the market source and every listening address (gunicorn's
    parsed `address` list), or StartError naming the first that cannot work."""
    if settings.redis_url is not None:
        check_redis_url(settings.redis_url)
    check_market(settings.market)
    for address in addresses:
        if isinstance(address, tuple):
            check_port(str(address[0]), int(address[1]))


def check_redis_url(url: str) -> None:
    # Imported here: the storage package loads prometheus_client, which the
    # master must not do before it has chosen the metrics folder.
    from oppscan.storage.client import redis_address

    try:
        redis_address(url)
    except ValueError as exc:  # the message names the part, never the password
        raise StartError(f"{PREFIX}REDIS_URL is not a Redis URL: {exc}") from None


def check_market(spec: str) -> None:
    """The source can be made; a local one must have symbols. An exchange is not asked
    here: it may be briefly down, and scans say so when it is."""
    try:
        market = load_market(spec)
        symbols = None if spec.startswith("ccxt:") else market.symbols()
    except (ValueError, MarketDataError) as exc:
        raise StartError(f"{PREFIX}MARKET={spec}: {exc}") from None
    if symbols is not None and not symbols:
        raise StartError(f"{PREFIX}MARKET={spec}: no SYMBOL.csv file in it")


def check_port(host: str, port: int) -> None:
    """Bind and let go, as gunicorn will bind (SO_REUSEADDR): a port in use fails now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise StartError(f"cannot listen on {host}:{port}: {reason}") from None


def ready_text(settings: Settings) -> str:
    """What `oppscan serve` prints on stdout once it listens (its log is stderr): the
    URL, where its data and token secret live, and a token for the user `demo`."""
    host = settings.bind.split("://", 1)[-1]
    lines = [f"oppscan ready at http://{host}", f"data:   {settings.data_dir.resolve()}"]
    return "\n".join(lines + _token_lines(settings))


def _token_lines(settings: Settings) -> list[str]:
    if not HMAC_ALGORITHMS.intersection(settings.jwt_algorithms):
        algorithms = ",".join(settings.jwt_algorithms)
        return [f"tokens: {algorithms}, from the identity provider (no demo token)"]
    token = settings_token(settings, "demo")  # creates the data dir's secret if need be
    if settings.secrets():
        return [f"secret: {PREFIX}SECRET (the environment)", f"demo bearer token: {token}"]
    return [f"secret: {settings.secret_file.resolve()}", f"demo bearer token: {token}"]


class DataDirLock:
    """One server per data dir: an exclusive `flock` on DATA_DIR/serve.lock, which
    holds the owner's pid. The kernel drops it when the owner's processes end."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StartError(
                f"data dir {self.path.parent} is in use by process {holder} "
                f"(another oppscan serve); stop it or set {PREFIX}DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
