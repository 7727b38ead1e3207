"""End-to-end fixtures: real gunicorn with several workers on a real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import GunicornServer


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    """gunicorn with 4 workers whose market data answers slowly, so scans take seconds."""
    service = GunicornServer(
        redis_url, tmp_path, workers=4, env={"OPPSCAN_SYNTHETIC_LATENCY_MS": "3"}
    ).start()
    yield service
    service.stop()
