"""Structured logs: one JSON event per line, with the worker that wrote it and,
within a request, the request's id."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Any

import structlog

from oppscan.settings import worker_name

# The id of the request this thread serves (set and cleared by the HTTP middleware:
# one variable, cheaper per request than structlog's bind and clear).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)


def configure(level: str = "info") -> None:
    """JSON lines on stderr for oppscan's events and for stdlib loggers alike."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        _add_request_id,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_worker,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=shared,
        )
    )
    # pykka's own: actors that crash, and every thread's stack on SIGUSR1.
    for name in ("oppscan", "pykka"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(numeric)
        logger.propagate = False


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
