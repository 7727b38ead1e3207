"""Per-user abuse limits, shared by every worker through Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from oppscan.model import ScanParams
from oppscan.runtime import Runtime, start_runtime, stop_runtime
from oppscan.service import RateLimited, ScanService, TooManyActiveScans
from oppscan.settings import Settings


def params(symbol: str) -> ScanParams:
    return ScanParams(("momentum", "rsi_reversal"), (symbol,), "1h")


@pytest.fixture
def two_workers(redis_url: str, data_dir: Path) -> Iterator[tuple[ScanService, ScanService]]:
    settings = Settings(
        redis_url=redis_url,
        data_dir=data_dir,
        synthetic_latency_ms=2000.0,  # scans stay active for the whole test
        max_active_scans_per_user=2,
        discover_rate_per_minute=5,
    )
    runtimes: list[Runtime] = [start_runtime(settings), start_runtime(settings)]
    yield ScanService(runtimes[0]), ScanService(runtimes[1])
    for runtime in runtimes:
        stop_runtime(runtime)


def test_active_scans_are_limited_per_user_across_workers(
    two_workers: tuple[ScanService, ScanService],
) -> None:
    """A third active scan is refused on any worker; joining and other users are not."""
    one, two = two_workers
    first = one.discover("alice", params("BTC-USD"), False)
    two.discover("alice", params("ETH-USD"), False)
    with pytest.raises(TooManyActiveScans):
        two.discover("alice", params("SOL-USD"), False)
    assert first.scan_id == one.discover("alice", params("BTC-USD"), False).scan_id
    assert one.discover("bob", params("SOL-USD"), False).scan_id


def test_cancelling_frees_an_active_slot(two_workers: tuple[ScanService, ScanService]) -> None:
    """Once a scan is finished (here: cancelled) the user may start another."""
    one, two = two_workers
    first = one.discover("alice", params("BTC-USD"), False)
    two.discover("alice", params("ETH-USD"), False)
    one.cancel("alice", first.scan_id)
    assert two.discover("alice", params("SOL-USD"), False).scan_id


def test_discover_rate_is_shared_by_all_workers(
    two_workers: tuple[ScanService, ScanService],
) -> None:
    """Five discovers a minute per user, counted over both workers; the sixth waits."""
    one, two = two_workers
    for i in range(5):
        (one if i % 2 else two).discover("carol", params("BTC-USD"), False)
    with pytest.raises(RateLimited) as refused:
        one.discover("carol", params("BTC-USD"), False)
    assert 1 <= refused.value.retry_after <= 60
