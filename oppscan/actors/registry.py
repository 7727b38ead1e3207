"""RegistryActor: which scans this worker runs, and a cache of finished ones.

It answers from memory only and never touches Redis, so a slow store cannot
delay answers for scans owned here. The cache holds terminal snapshots, for no
longer than their retention; never a miss, never a running scan's progress.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
from cachetools import TLRUCache

from oppscan.actors.scan import Registrar, ScanActor, ScanDeps, ScanJob
from oppscan.model import ScanSnapshot, parse_iso


@dataclass(frozen=True)
class Resolution:
    """Where a scan id can be answered from in this worker, if anywhere."""

    local: Any | None = None  # a ScanActor proxy
    cached: ScanSnapshot | None = None


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    size: int
    local: int


class RegistryActor(pykka.ThreadingActor):
    def __init__(
        self,
        cache_ttl: float,
        cache_size: int,
        result_ttl: int,
        deps_for: Callable[[Registrar], ScanDeps],
    ) -> None:
        super().__init__()
        self._deps_for = deps_for
        self._deps: ScanDeps | None = None
        self._cache_ttl = cache_ttl
        self._result_ttl = result_ttl
        self._cache: TLRUCache[str, ScanSnapshot] = TLRUCache(
            maxsize=cache_size, ttu=self._expires, timer=time.monotonic
        )
        self._local: dict[str, Any] = {}
        self._hits = 0
        self._misses = 0

    # -- asked -----------------------------------------------------------

    def spawn(self, job: ScanJob) -> None:
        """Start the scan's actor here, so its `scan_finished` always finds it adopted."""
        if self._deps is None:
            self._deps = self._deps_for(self.actor_ref.proxy())
        ref = ScanActor.start(job, self._deps)
        # A scan that finished already has its `scan_finished` queued behind this message.
        with contextlib.suppress(pykka.ActorDeadError):
            self._local[job.scan_id] = ref.proxy()

    def resolve(self, scan_id: str) -> Resolution:
        local = self._local.get(scan_id)
        if local is not None:
            return Resolution(local=local)
        cached = self._cache.get(scan_id)
        if cached is None:
            self._misses += 1
            return Resolution()
        self._hits += 1
        return Resolution(cached=cached)

    def local_scans(self) -> dict[str, Any]:
        return dict(self._local)

    def stats(self) -> CacheStats:
        return CacheStats(self._hits, self._misses, len(self._cache), len(self._local))

    # -- told ------------------------------------------------------------

    def scan_finished(self, snapshot: ScanSnapshot) -> None:
        self._local.pop(snapshot.scan_id, None)
        self.remember(snapshot)

    def scan_released(self, scan_id: str) -> None:
        self._local.pop(scan_id, None)

    def remember(self, snapshot: ScanSnapshot) -> None:
        """Cache a terminal snapshot; keep one that already carries results."""
        if not snapshot.status.terminal or self._retention_left(snapshot) <= 0:
            return
        known = self._cache.get(snapshot.scan_id)
        if known is not None and known.results is not None and snapshot.results is None:
            return
        self._cache[snapshot.scan_id] = snapshot

    # -- cache policy ------------------------------------------------------

    def _expires(self, _key: str, snapshot: ScanSnapshot, now: float) -> float:
        return now + min(self._cache_ttl, self._retention_left(snapshot))

    def _retention_left(self, snapshot: ScanSnapshot) -> float:
        if snapshot.completed_at is None:
            return 0.0
        age = time.time() - parse_iso(snapshot.completed_at).timestamp()
        return self._result_ttl - age
