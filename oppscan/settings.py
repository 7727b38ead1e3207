"""Every setting oppscan has, read from the environment once.

Nothing else in the package reads `os.environ`. Variables are prefixed
`OPPSCAN_`; `REDIS_URL` and `WEB_CONCURRENCY` are honoured as the ecosystem
expects.
"""

from __future__ import annotations

import functools
import json
import os
import re
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from oppscan.model import DEFAULT_SHARDS, MAX_SHARDS

PREFIX = "OPPSCAN_"
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the name prometheus_client reads
SECRET_FILE = "secret"  # noqa: S105 - a file name in the data dir, not a secret


class SettingsError(ValueError):
    """An environment variable holds a value oppscan cannot use."""


def default_data_dir() -> Path:
    """The user's data directory (`~/.local/share/oppscan` on Linux, or under
    `XDG_DATA_HOME`): the same from any working directory, so `oppscan token`
    run anywhere signs with the secret of the `oppscan serve` of the same user."""
    return platformdirs.user_data_path("oppscan")


@dataclass(frozen=True)
class Settings:
    """The resolved configuration of one process."""

    redis_url: str | None = None
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int = 4
    secret: str | None = None
    result_ttl: int = 3600
    lease_ttl: float = 10.0
    max_scans_per_worker: int = 8
    strategy_threads: int = 4
    strategy_processes: int = 0  # > 0: strategies run in this many child processes
    strategy_timeout: float = 120.0  # seconds a strategy may run before it is recorded `error`
    data_dir: Path = field(default_factory=default_data_dir)
    market: str = "synthetic"
    synthetic_latency_ms: float = 0.0
    symbols: tuple[str, ...] = ()  # ccxt: the symbols to scan; empty: the top `universe_size`
    universe_size: int = 60
    ccxt_config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    ccxt_credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    fetch_concurrency: int = 16  # series a worker fetches at once
    fetch_timeout: float = 60.0  # seconds one series may take, waits for other fetches included
    market_cache_mb: int = 64  # the in-process layer of the series cache, per worker
    key_prefix: str = "oppscan:"
    redis_shards: int = DEFAULT_SHARDS  # scan key groups; fixed for a deployment's life
    results_cap: int = 200
    cache_ttl: float = 300.0
    cache_max_mb: int = 64  # each worker's cache of finished scans, results included
    ask_timeout: float = 2.0
    handoff_timeout: float = 10.0
    max_active_scans_per_user: int = 10
    discover_rate_per_minute: int = 120  # 0: no rate limit
    redis_timeout: float = 0.5
    max_body_bytes: int = 64 * 1024
    body_timeout: float = 10.0
    log_level: str = "info"
    log_user: str = "hash"  # how log events name a user: hash, plain or off
    access_log: bool = True  # one `request` event per request answered
    metrics_dir: Path | None = None
    jwt_algorithms: tuple[str, ...] = ("HS256",)
    jwt_public_key: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API; none: no CORS
    url: str | None = None  # the service `oppscan scan` and its kin talk to
    token: str | None = field(default=None, repr=False)  # their bearer token

    @property
    def lease_ms(self) -> int:
        """The lease TTL as Redis takes it."""
        return int(self.lease_ttl * 1000)

    @property
    def embedded(self) -> bool:
        """True when no Redis was configured and oppscan runs its own server."""
        return self.redis_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from `env` (the process environment by default)."""
        env = os.environ if env is None else env
        get = _Reader(env)
        return cls(
            redis_url=get.text("REDIS_URL", fallback="REDIS_URL"),
            bind=get.text("BIND") or _platform_bind(env) or cls.bind,
            workers=get.integer("WORKERS", cls.workers, fallback="WEB_CONCURRENCY"),
            threads=get.integer("THREADS", cls.threads),
            secret=get.text("SECRET"),
            result_ttl=get.integer("RESULT_TTL", cls.result_ttl),
            lease_ttl=get.number("LEASE_TTL", cls.lease_ttl),
            max_scans_per_worker=get.integer("MAX_SCANS_PER_WORKER", cls.max_scans_per_worker),
            strategy_threads=get.integer("STRATEGY_THREADS", cls.strategy_threads),
            strategy_processes=get.integer("STRATEGY_PROCESSES", cls.strategy_processes, minimum=0),
            strategy_timeout=get.number("STRATEGY_TIMEOUT", cls.strategy_timeout),
            data_dir=Path(get.text("DATA_DIR") or default_data_dir()),
            market=get.text("MARKET") or cls.market,
            synthetic_latency_ms=get.number("SYNTHETIC_LATENCY_MS", 0.0, minimum=0.0),
            symbols=_words(get.text("SYMBOLS") or "", upper=False),
            universe_size=get.integer("UNIVERSE_SIZE", cls.universe_size),
            ccxt_config=_json_object(get.text("CCXT_CONFIG")),
            ccxt_credentials=_credentials(env, get.text("MARKET") or cls.market),
            fetch_concurrency=get.integer("FETCH_CONCURRENCY", cls.fetch_concurrency),
            fetch_timeout=get.number("FETCH_TIMEOUT", cls.fetch_timeout),
            market_cache_mb=get.integer("MARKET_CACHE_MB", cls.market_cache_mb, minimum=0),
            key_prefix=get.text("KEY_PREFIX") or cls.key_prefix,
            redis_shards=get.integer("REDIS_SHARDS", cls.redis_shards, maximum=MAX_SHARDS),
            results_cap=get.integer("RESULTS_CAP", cls.results_cap),
            cache_ttl=get.number("CACHE_TTL", cls.cache_ttl),
            cache_max_mb=get.integer("CACHE_MAX_MB", cls.cache_max_mb, minimum=0),
            redis_timeout=get.number("REDIS_TIMEOUT", cls.redis_timeout),
            handoff_timeout=get.number("HANDOFF_TIMEOUT", cls.handoff_timeout),
            body_timeout=get.number("BODY_TIMEOUT", cls.body_timeout),
            max_active_scans_per_user=get.integer(
                "MAX_ACTIVE_SCANS_PER_USER", cls.max_active_scans_per_user
            ),
            discover_rate_per_minute=get.integer(
                "DISCOVER_RATE_PER_MINUTE", cls.discover_rate_per_minute, minimum=0
            ),
            log_level=(get.text("LOG_LEVEL") or cls.log_level).lower(),
            log_user=get.choice("LOG_USER", cls.log_user, ("hash", "plain", "off")),
            access_log=get.choice("ACCESS_LOG", "1", ("0", "1")) == "1",
            metrics_dir=_path(get.text("METRICS_DIR", fallback=METRICS_ENV)),
            jwt_algorithms=_words(get.text("JWT_ALGORITHMS") or "HS256"),
            jwt_public_key=_pem(get.text("JWT_PUBLIC_KEY")),
            jwt_audience=get.text("JWT_AUDIENCE"),
            jwt_issuer=get.text("JWT_ISSUER"),
            cors_origins=_origins(get.text("CORS_ORIGINS")),
            url=get.text("URL"),
            token=get.text("TOKEN"),
        )

    def secrets(self) -> list[str]:
        """Every configured token secret; the first one signs."""
        return [s.strip() for s in (self.secret or "").split(",") if s.strip()]

    def resolved_secret(self) -> str:
        """The signing secret: the first of `OPPSCAN_SECRET`, or one kept in the data dir."""
        configured = self.secrets()
        return configured[0] if configured else _data_dir_secret(self.data_dir)

    @property
    def secret_file(self) -> Path:
        """Where the generated secret is kept when `OPPSCAN_SECRET` is unset."""
        return self.data_dir / SECRET_FILE

    def available_secret(self) -> str | None:
        """The signing secret if one exists already (configured, or in the data dir);
        unlike `resolved_secret`, never creates one."""
        configured = self.secrets()
        if configured:
            return configured[0]
        try:
            return self.secret_file.read_text().strip() or None
        except FileNotFoundError:
            return None


def export_metrics_dir(path: Path) -> None:
    """Make every process forked after this write its metrics under `path`."""
    os.environ[METRICS_ENV] = str(path)


def export_redis_url(url: str) -> None:
    """Hand the embedded server's URL to the worker processes forked after this."""
    os.environ[PREFIX + "REDIS_URL"] = url


def worker_name() -> str:
    """`host:pid`, the value of `X-Served-By` and of a scan's `owner`."""
    return _worker_name(os.getpid())


@functools.lru_cache(maxsize=4)
def _worker_name(pid: int) -> str:
    """Once per process (the pid is the key: a forked worker gets its own)."""
    return f"{socket.gethostname()}:{pid}"


def _words(value: str, upper: bool = True) -> tuple[str, ...]:
    words = (w.strip() for w in value.split(",") if w.strip())
    return tuple(w.upper() if upper else w for w in words)


def _json_object(value: str | None) -> dict[str, dict[str, Any]]:
    """`OPPSCAN_CCXT_CONFIG`: {"exchange id": {ccxt constructor options}}."""
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}CCXT_CONFIG is not JSON: {exc}") from None
    if not isinstance(parsed, dict) or not all(isinstance(v, dict) for v in parsed.values()):
        raise SettingsError(
            f"{PREFIX}CCXT_CONFIG must be an object of objects, by exchange id: "
            '{"binance": {"options": {...}}}'
        )
    return parsed


CREDENTIAL_FIELDS = {"API_KEY": "apiKey", "SECRET": "secret", "PASSWORD": "password"}


def _credentials(env: Mapping[str, str], market: str) -> dict[str, dict[str, str]]:
    """API keys of the exchanges `market` names, from `OPPSCAN_<EXCHANGE>_API_KEY`,
    `_SECRET` and `_PASSWORD` (e.g. `OPPSCAN_BINANCE_API_KEY`). Optional: public
    market data needs none."""
    kind, _, names = market.partition(":")
    exchanges = (
        [name.strip() for name in names.split(",") if name.strip()] if kind == "ccxt" else []
    )
    found: dict[str, dict[str, str]] = {}
    for exchange in exchanges:
        for suffix, option in CREDENTIAL_FIELDS.items():
            value = env.get(f"{PREFIX}{exchange.upper()}_{suffix}", "").strip()
            if value:
                found.setdefault(exchange, {})[option] = value
    return found


ORIGIN = re.compile(r"^https?://[^/\s]+$")


def _origins(value: str | None) -> tuple[str, ...]:
    """`OPPSCAN_CORS_ORIGINS`: origins as browsers send them, `scheme://host[:port]`."""
    origins = _words(value or "", upper=False)
    for origin in origins:
        if not ORIGIN.match(origin):
            raise SettingsError(
                f"{PREFIX}CORS_ORIGINS: {origin!r} is not an origin like https://app.example.com "
                "(scheme, host and port only: no path, no trailing slash, no wildcard)"
            )
    return origins


def _pem(value: str | None) -> str | None:
    """A PEM given inline, or the path of a file holding one."""
    if not value or value.startswith("-----BEGIN"):
        return value
    try:
        return Path(value).read_text()
    except OSError as exc:
        raise SettingsError(
            f"{PREFIX}JWT_PUBLIC_KEY: cannot read {value}: {exc.strerror}"
        ) from None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _data_dir_secret(data_dir: Path) -> str:
    path = data_dir / SECRET_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def _platform_bind(env: Mapping[str, str]) -> str | None:
    """Every interface on the `PORT` a platform gives the process (when it gives one)."""
    port = env.get("PORT", "").strip()
    if not port:
        return None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"PORT must be a port number, got {port!r}")
    return f"0.0.0.0:{int(port)}"


@dataclass(frozen=True)
class _Reader:
    env: Mapping[str, str]

    def text(self, name: str, fallback: str | None = None) -> str | None:
        value = self.env.get(PREFIX + name) or (self.env.get(fallback) if fallback else None)
        return value.strip() if value and value.strip() else None

    def integer(
        self,
        name: str,
        default: int,
        fallback: str | None = None,
        minimum: int = 1,
        maximum: int | None = None,
    ) -> int:
        raw = self.text(name, fallback)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{PREFIX}{name} must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{PREFIX}{name} must be at most {maximum}, got {value}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = (self.text(name) or default).lower()
        if raw not in allowed:
            raise SettingsError(f"{PREFIX}{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return raw

    def number(self, name: str, default: float, minimum: float = 1e-3) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name} must be a number, got {raw!r}") from None
        if not value >= minimum:
            raise SettingsError(f"{PREFIX}{name} must be at least {minimum}, got {raw}")
        return value
