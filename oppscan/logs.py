"""Structured logs: one JSON event per line on stderr, with the worker that wrote
it and, within a request, the request's id. gunicorn's own lines go through the
same formatter (`gunicorn_logging.py`), so the stream is JSON from end to end.

Users appear in events as `OPPSCAN_LOG_USER` says: `hash` (default: a keyed
digest, the same for one user in every event and on every host that shares the
secret, and no name), `plain` or `off`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import sys
from contextvars import ContextVar
from typing import Any

import orjson
import structlog

from oppscan.settings import worker_name

# The id of the request this thread serves (set and cleared by the HTTP middleware:
# one variable, cheaper per request than structlog's bind and clear).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


class UserField:
    """How a user is named in log events (see the module's doc)."""

    def __init__(self, policy: str = "hash", key: str = "") -> None:
        if policy not in ("hash", "plain", "off"):
            raise ValueError(f"no user policy {policy!r}")
        self.policy = policy
        self._key = hashlib.sha256(key.encode()).digest()  # blake2b keys are 64 bytes at most
        self._hashed = functools.lru_cache(maxsize=4096)(self._hash)

    def __call__(self, user: str) -> str | None:
        if self.policy == "off":
            return None
        if self.policy == "plain":
            return user
        return self._hashed(user)

    def _hash(self, user: str) -> str:
        digest = hashlib.blake2b(user.encode(), key=self._key, digest_size=8).hexdigest()
        return f"u-{digest}"


USER = UserField()  # replaced by `configure`


def configure(level: str = "info", users: UserField | None = None) -> None:
    """JSON lines on stderr for oppscan's events and for stdlib loggers alike.

    oppscan's own events take structlog's short path (filtered by level before any
    processing, rendered by orjson, written as bytes): a line per request must
    cost microseconds, not a stdlib record's hundred. Other libraries' records
    (gunicorn's, pykka's, Python's warnings) go through `json_handler`.
    """
    global USER
    if users is not None:
        USER = users
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    structlog.configure(
        processors=[
            *SHARED,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_orjson_line),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.BytesLoggerFactory(sys.stderr.buffer),
        cache_logger_on_first_use=True,
    )
    handler = json_handler()
    # pykka's own: actors that crash, and every thread's stack on SIGUSR1; plugin
    # loading (stdlib); and Python's warnings, which would print plain text.
    logging.captureWarnings(True)
    for name in ("oppscan", "pykka", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(numeric)
        logger.propagate = False


def _orjson_line(event: Any, **_: Any) -> bytes:
    return orjson.dumps(event, default=str)


def _orjson_text(event: Any, **_: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def json_handler() -> logging.Handler:
    """A handler writing each record as one JSON line on stderr (a traceback is a
    field), for structlog's events and any stdlib logger's records alike."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_orjson_text),
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *SHARED],  # gunicorn's, pykka's
        )
    )
    return handler


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def _add_request_id(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    request_id = REQUEST_ID.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def _add_worker(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    event.setdefault("worker", worker_name())
    return event


SHARED: list[Any] = [
    _add_request_id,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _add_worker,
]
