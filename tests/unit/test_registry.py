"""RegistryView: local scans first, a cache of terminal snapshots, never a miss."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from oppscan.actors import RegistryView
from oppscan.model import ScanSnapshot, ScanStatus, now_iso

SCAN = "scan_" + "b" * 32


def running() -> ScanSnapshot:
    stamp = now_iso()
    return ScanSnapshot(SCAN, "alice", ScanStatus.SCANNING, 3, 1, 0, stamp, stamp)


def finished(completed_at: str | None = None) -> ScanSnapshot:
    stamp = completed_at or now_iso()
    return replace(
        running(), status=ScanStatus.COMPLETE, completed=3, completed_at=stamp, results=b"{}"
    )


@pytest.fixture
def registry() -> RegistryView:
    return RegistryView(300.0, 100, 3600)


def test_unknown_scan_resolves_to_nothing_and_is_not_cached(registry: RegistryView) -> None:
    """A miss is answered as a miss, and asking again is still a miss (no negative cache)."""
    assert (None, None) == (
        registry.resolve(SCAN).local,
        registry.resolve(SCAN).cached,
    )
    assert 0 == registry.stats().size


def test_running_snapshots_are_never_cached(registry: RegistryView) -> None:
    """A running scan's progress is not remembered."""
    registry.remember(running())
    assert None is registry.resolve(SCAN).cached


def test_terminal_snapshots_are_cached(registry: RegistryView) -> None:
    """A finished scan is answered from the cache afterwards."""
    snap = finished()
    registry.remember(snap)
    assert snap == registry.resolve(SCAN).cached


def test_snapshot_with_results_is_not_replaced_by_one_without(registry: RegistryView) -> None:
    """A status-only read does not evict the cached results."""
    snap = finished()
    registry.remember(snap)
    registry.remember(replace(snap, results=None))
    assert b"{}" == registry.resolve(SCAN).cached.results


def test_nothing_is_cached_past_its_retention(registry: RegistryView) -> None:
    """A snapshot whose retention already ran out is not cached at all."""
    old = (datetime.now(UTC) - timedelta(seconds=3601)).isoformat().replace("+00:00", "Z")
    registry.remember(finished(old))
    assert None is registry.resolve(SCAN).cached


def test_cache_entry_lives_no_longer_than_the_retention_left() -> None:
    """The cache TTL of an entry is the smaller of the cache TTL and its retention left."""
    view = RegistryView(300.0, 10, 3600)
    almost = (datetime.now(UTC) - timedelta(seconds=3590)).isoformat().replace("+00:00", "Z")
    expires = view._expires(SCAN, finished(almost), now=1000.0)
    assert 1000.0 < expires <= 1010.5
    assert 1300.0 == pytest.approx(view._expires(SCAN, finished(), now=1000.0), abs=0.5)
