"""RegistryActor: which scans this worker runs, and a cache of finished ones.

It answers from memory only and never touches Redis, so a slow store cannot
delay answers for scans owned here. The cache holds terminal snapshots, for no
longer than their retention; never a miss, never a running scan's progress.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pykka
from cachetools import TLRUCache

from oppscan.actors.scan import Registrar, ScanActor, ScanDeps
from oppscan.metrics import CACHE_LOOKUPS, SCANS_RUNNING
from oppscan.model import ScanJob, ScanSnapshot, parse_iso
from oppscan.storage import LeaseState


@dataclass(frozen=True)
class Resolution:
    """Where a scan id can be answered from in this worker, if anywhere."""

    local: Any | None = None  # a ScanActor proxy
    cached: ScanSnapshot | None = None


@dataclass(frozen=True)
class CacheStats:
    """Sizes only: hits and misses are counted in `oppscan_registry_cache_total`."""

    size: int
    local: int


class RegistryActor(pykka.ThreadingActor):
    def __init__(
        self,
        cache_ttl: float,
        cache_size: int,
        result_ttl: int,
        deps_for: Callable[[Registrar], ScanDeps],
        lease_ttl: float = 10.0,
    ) -> None:
        super().__init__()
        self._lease_ttl = lease_ttl
        # Until when (monotonic) this worker surely still holds each lease: the
        # request that set it left before Redis computed its deadline.
        self._lease_until: dict[str, float] = {}
        self._deps_for = deps_for
        self._deps: ScanDeps | None = None
        self._cache_ttl = cache_ttl
        self._result_ttl = result_ttl
        self._cache: TLRUCache[str, ScanSnapshot] = TLRUCache(
            maxsize=cache_size, ttu=self._expires, timer=time.monotonic
        )
        self._local: dict[str, Any] = {}
        self._epochs: dict[str, int] = {}

    # -- asked -----------------------------------------------------------

    def spawn(self, job: ScanJob, leased_at: float) -> None:
        """Start the scan's actor here, so its `scan_finished` always finds it adopted.

        `leased_at` is when (monotonic) the request that took the lease was sent.
        """
        if self._deps is None:
            self._deps = self._deps_for(self.actor_ref.proxy())
        ref = ScanActor.start(job, self._deps)
        # A scan that finished already has its `scan_finished` queued behind this message.
        with contextlib.suppress(pykka.ActorDeadError):
            self._local[job.scan_id] = ref.proxy()
            self._epochs[job.scan_id] = job.epoch
            self._lease_until[job.scan_id] = leased_at + self._lease_ttl
        SCANS_RUNNING.set(len(self._local))

    def resolve(self, scan_id: str) -> Resolution:
        """The local actor while our lease surely holds; else the cache; else nothing.

        A worker that was paused past its lease must not answer from its actor:
        another worker may own the scan now, with more progress.
        """
        local = self._local.get(scan_id)
        if local is not None and time.monotonic() < self._lease_until.get(scan_id, 0.0):
            return Resolution(local=local)
        cached = self._cache.get(scan_id)
        if cached is None:
            CACHE_LOOKUPS.labels("miss").inc()
            return Resolution()
        CACHE_LOOKUPS.labels("hit").inc()
        return Resolution(cached=cached)

    def local_scans(self) -> dict[str, Any]:
        return dict(self._local)

    def local_count(self) -> int:
        return len(self._local)

    def leases(self) -> tuple[tuple[str, int], ...]:
        """(scan id, epoch) of every scan this worker owns."""
        return tuple((sid, self._epochs[sid]) for sid in self._local)

    def stats(self) -> CacheStats:
        return CacheStats(len(self._cache), len(self._local))

    # -- told ------------------------------------------------------------

    def scan_finished(self, snapshot: ScanSnapshot) -> None:
        self._forget(snapshot.scan_id)
        self.remember(snapshot)

    def scan_released(self, scan_id: str) -> None:
        self._forget(scan_id)

    def leases_checked(self, states: Sequence[LeaseState], renewed_at: float) -> None:
        """Tell owners that lost their lease, or whose scan someone asked to cancel."""
        for state in states:
            proxy = self._local.get(state.scan_id)
            if proxy is None:
                continue
            if state.held:
                self._lease_until[state.scan_id] = renewed_at + self._lease_ttl
            if not state.held:
                proxy.lost()
            elif state.cancel_requested:
                proxy.cancel()

    def store_recovered(self) -> None:
        """Redis answers again: every owner flushes the writes it kept."""
        for proxy in self._local.values():
            proxy.retry_writes()

    def remember(self, snapshot: ScanSnapshot) -> None:
        """Cache a terminal snapshot; keep one that already carries results."""
        if not snapshot.status.terminal or self._retention_left(snapshot) <= 0:
            return
        known = self._cache.get(snapshot.scan_id)
        if known is not None and known.results is not None and snapshot.results is None:
            return
        self._cache[snapshot.scan_id] = snapshot

    def _forget(self, scan_id: str) -> None:
        self._local.pop(scan_id, None)
        self._epochs.pop(scan_id, None)
        self._lease_until.pop(scan_id, None)
        SCANS_RUNNING.set(len(self._local))

    # -- cache policy ------------------------------------------------------

    def _expires(self, _key: str, snapshot: ScanSnapshot, now: float) -> float:
        return now + min(self._cache_ttl, self._retention_left(snapshot))

    def _retention_left(self, snapshot: ScanSnapshot) -> float:
        if snapshot.completed_at is None:
            return 0.0
        age = time.time() - parse_iso(snapshot.completed_at).timestamp()
        return self._result_ttl - age
