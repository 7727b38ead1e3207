"""What the actors publish for request threads to read without asking them.

An actor stays the only writer of its state; it publishes immutable values
that any thread reads in well under a microsecond, instead of a pykka ask
(a future, a queue and two thread hand-offs on every status poll).

- `SnapshotCell`: one scan's snapshot, published by its ScanActor. The actor
  holds the cell across a Redis write and the publication of the progress it
  made durable, so a reader never sees the snapshot from before a write that
  another worker may already have read back from Redis.
- `RegistryView`: the scans this worker owns (published whole by the
  RegistryActor on every change) and the cache of finished scans.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from cachetools import TLRUCache

from oppscan.metrics import CACHE_LOOKUPS, HotCounter
from oppscan.model import Epoch, ScanJob, ScanSnapshot, StrategyResult, parse_iso

if TYPE_CHECKING:
    from oppscan.actors.proxies import ScanActorProxy

CACHE_HIT = HotCounter(CACHE_LOOKUPS.labels("hit"))
CACHE_MISS = HotCounter(CACHE_LOOKUPS.labels("miss"))


class CellBusy(Exception):
    """The scan's actor held its cell longer than the reader would wait (a slow write)."""


class SnapshotCell:
    """A scan's latest durable snapshot, written by its actor, read by anyone."""

    def __init__(self, snapshot: ScanSnapshot) -> None:
        self._lock = threading.Lock()
        self._snapshot = snapshot
        self._owned = True
        self._serving = True  # False while Redis may hold more than the snapshot

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Held by the actor from a Redis write until it published what the write made durable."""
        with self._lock:
            yield

    # The next three are called by the actor inside `writing()`.

    def publish(self, snapshot: ScanSnapshot) -> None:
        self._snapshot = snapshot
        self._serving = self._owned

    def withhold(self) -> None:
        """A write timed out: Redis may have applied it, so readers go to Redis until the
        next publication."""
        self._serving = False

    def give_up(self) -> None:
        """The write found a newer owner: readers go to Redis, where it writes."""
        self._owned = self._serving = False

    def disown(self) -> None:
        """The actor no longer owns the scan (released, fenced or stopped): readers go to Redis.

        A terminal snapshot stays readable: it is what Redis holds, for good.
        """
        with self._lock:
            self.give_up()

    def read(self, timeout: float) -> ScanSnapshot | None:
        """The snapshot, or None when readers must ask Redis instead."""
        if not self._lock.acquire(timeout=timeout):
            raise CellBusy
        try:
            snapshot = self._snapshot
            return snapshot if self._serving or snapshot.status.terminal else None
        finally:
            self._lock.release()


@dataclass(frozen=True)
class Finished:
    """A scan this worker finished, and what writing it back finished takes: kept a
    while, for a Redis that restarts without its last writes (the final one among
    them) would otherwise show it running, and let another worker run it again."""

    job: ScanJob
    final: ScanSnapshot
    results: tuple[StrategyResult, ...]
    digest: str
    ttl: int
    at: float = field(default_factory=time.monotonic)

    def seconds_left(self, now: datetime) -> float:
        """What is left of its retention (its whole TTL when it says no end)."""
        if self.final.expires_at is None:
            return float(self.ttl)
        return (parse_iso(self.final.expires_at) - now).total_seconds()


@dataclass(frozen=True)
class Owned:
    """A scan this worker runs: its actor, its cell, and how long its lease surely holds."""

    proxy: ScanActorProxy  # for cancel and hand-off
    cell: SnapshotCell
    epoch: Epoch
    lease_until: float  # monotonic
    created_at: str = ""  # the scan's, for its age


@dataclass(frozen=True)
class Resolution:
    """Where a scan id can be answered from in this worker, if anywhere."""

    local: Owned | None = None
    cached: ScanSnapshot | None = None
    lease_unsure: bool = False  # owned here, but the lease may have lapsed meanwhile


# A cached snapshot's own memory, its results document aside: its fields, states,
# rendered status and tag, and the cache's entry (tracemalloc over 2,000: 10 KB).
SNAPSHOT_BYTES = 10 * 1024


def cached_bytes(snapshot: ScanSnapshot) -> int:
    """What a snapshot costs the cache: its object, strings and entry, and its results."""
    return SNAPSHOT_BYTES + len(snapshot.results or b"")


class RegistryView:
    """The registry's published state: owned scans, and a TLRU cache of finished ones.

    The cache holds terminal snapshots, for no longer than their retention; never
    a miss, never a running scan's progress. It is bounded by bytes
    (`cache_bytes`, `cached_bytes` each): the least recently used go first. Its
    lock is held for a dict operation at a time.
    """

    def __init__(self, cache_ttl: float, cache_bytes: int, result_ttl: int) -> None:
        self._owned: Mapping[str, Owned] = MappingProxyType({})
        self._finished: tuple[Finished, ...] = ()
        self._cache_ttl = cache_ttl
        self._result_ttl = result_ttl
        self._cache: TLRUCache[str, ScanSnapshot] = TLRUCache(
            maxsize=cache_bytes, ttu=self._expires, timer=time.monotonic, getsizeof=cached_bytes
        )
        self._cache_lock = threading.Lock()

    # -- read by anyone --------------------------------------------------------

    def resolve(self, scan_id: str) -> Resolution:
        """The local scan while our lease surely holds; else the cache; else nothing.

        A worker that was paused past its lease must not answer from its actor:
        another worker may own the scan now, with more progress.
        """
        local = self.local(scan_id)
        if local is not None:
            return Resolution(local=local)
        try:
            with self._cache_lock:  # one lookup: `get` would check the expiry twice
                cached: ScanSnapshot | None = self._cache[scan_id]
        except KeyError:
            cached = None
        if cached is None:
            CACHE_MISS.inc()
        else:
            CACHE_HIT.inc()
        return Resolution(cached=cached, lease_unsure=scan_id in self._owned)

    def local(self, scan_id: str) -> Owned | None:
        """The scan, if this worker owns it and surely still holds its lease."""
        owned = self._owned.get(scan_id)
        return owned if owned is not None and time.monotonic() < owned.lease_until else None

    def holds(self, scan_id: str, epoch: Epoch) -> bool:
        """True while this worker surely holds the lease of that epoch of the scan."""
        local = self.local(scan_id)
        return local is not None and local.epoch == epoch

    def owned(self) -> Mapping[str, Owned]:
        return self._owned

    def leases(self) -> tuple[tuple[str, Epoch], ...]:
        """(scan id, epoch) of every scan this worker owns."""
        return tuple((scan_id, owned.epoch) for scan_id, owned in self._owned.items())

    def remember(self, snapshot: ScanSnapshot) -> None:
        """Cache a terminal snapshot; keep one that already carries results."""
        if not snapshot.status.terminal or self._retention_left(snapshot) <= 0:
            return
        if cached_bytes(snapshot) > self._cache.maxsize:
            return  # larger than the whole cache: read from Redis each time
        with self._cache_lock:
            known = self._cache.get(snapshot.scan_id)
            if known is None or known.results is None or snapshot.results is not None:
                self._cache[snapshot.scan_id] = snapshot

    # -- written by the RegistryActor only ------------------------------------

    def publish(self, owned: Mapping[str, Owned]) -> None:
        self._owned = MappingProxyType(dict(owned))

    def publish_finished(self, finished: Sequence[Finished]) -> None:
        self._finished = tuple(finished)

    def recently_finished(self) -> tuple[Finished, ...]:
        """Scans this worker finished lately (for the steward to write back)."""
        return self._finished

    # -- cache policy ------------------------------------------------------------

    def _expires(self, _key: str, snapshot: ScanSnapshot, now: float) -> float:
        return now + min(self._cache_ttl, self._retention_left(snapshot))

    def _retention_left(self, snapshot: ScanSnapshot) -> float:
        if snapshot.completed_at is None:
            return 0.0
        age = time.time() - parse_iso(snapshot.completed_at).timestamp()
        return self._result_ttl - age
