"""The scan service: what the HTTP layer asks for, in domain terms.

Reads go to the local actor, then the registry's cache, then Redis; the answer
says which (`source`). Nothing here turns a store outage into "not found".
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Literal, TypeVar

import pykka

from oppscan import logs
from oppscan.actors import CellBusy, SnapshotCell
from oppscan.logs import get_logger
from oppscan.metrics import SCAN_READS, SCANS_STARTED, HotCounter
from oppscan.model import (
    ScanParams,
    ScanSnapshot,
    ScanStatus,
    new_epoch_tag,
    now_iso,
)
from oppscan.results import build_partial
from oppscan.runtime import Runtime
from oppscan.storage import NewScan, Partial, Registered, StoreUnavailable

log = get_logger("oppscan.service")
T = TypeVar("T")

Source = Literal["actor", "cache", "store"]
# Why a read was answered from where it was (logged with not-found answers):
LookupMethod = Literal[
    "owner_snapshot",  # this worker runs the scan and surely holds its lease
    "cache",  # a finished scan this worker has seen
    "scan_hash",  # neither: one read of the scan's hash in Redis
    "scan_hash_lease_unsure",  # ours, but our lease may have lapsed (a paused worker)
    "scan_hash_owner_gone",  # ours until our actor gave the scan up meanwhile
    "scan_hash_for_results",  # cached without its results document
]
# The labelled children, looked up once: `labels()` costs more than `inc()`.
READS = {
    (source, outcome): HotCounter(SCAN_READS.labels(source, outcome))
    for source in ("actor", "cache", "store")
    for outcome in ("found", "not_found", "unavailable")
}
# How each kind of registration is counted in `oppscan_scans_started_total`.
KINDS = {Registered.JOINED: "deduplicated", Registered.REUSED: "reused"}


class ScanNotFound(Exception):
    """No such scan for this user (unknown, expired, or someone else's)."""


class ScanAlreadyFinished(Exception):
    def __init__(self, status: ScanStatus) -> None:
        super().__init__(f"scan is already {status.value}")
        self.status = status


class TooManyActiveScans(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} queued or running scans per user")
        self.limit = limit


class RateLimited(Exception):
    def __init__(self, retry_after: int, limit: int) -> None:
        super().__init__(f"at most {limit} discover requests per minute")
        self.retry_after = retry_after


class WorkerBusy(Exception):
    """An actor did not answer in time."""


@dataclass(frozen=True)
class Discovered:
    scan_id: str
    status: ScanStatus
    deduplicated: bool = False
    cached: bool = False


@dataclass(frozen=True)
class Answer:
    snapshot: ScanSnapshot
    source: Source
    partial: bytes | None = None  # a running scan's results so far (results only)


@dataclass(frozen=True)
class Lookup:
    """A read's outcome before the ownership check: the snapshot, if any, and how
    (with the strategy results recorded so far, when results were read from Redis)."""

    snapshot: ScanSnapshot | None
    source: Source
    lookup_method: LookupMethod
    partial: Partial | None = None


class ScanService:
    def __init__(self, runtime: Runtime) -> None:
        self._rt = runtime
        self._store = runtime.store
        self._registry = runtime.registry
        self._view = runtime.view
        self._timeout = runtime.settings.ask_timeout

    # -- discover ------------------------------------------------------------

    def discover(self, user: str, params: ScanParams, force_refresh: bool) -> Discovered:
        """Join a running identical scan, reuse a finished one, or start a new one."""
        self._check_rate(user)
        settings = self._rt.settings
        has_room = len(self._view.owned()) < settings.max_scans_per_worker
        scan = NewScan(
            scan_id=self._store.new_scan_id(user),
            user=user,
            params=params,
            created_at=now_iso(),
            owner=self._rt.worker if has_room else None,
        )
        sent = time.monotonic()
        limit = settings.max_active_scans_per_user
        done = self._store.register(scan, settings.lease_ms, force_refresh, limit)
        if done.kind is Registered.LIMITED:
            raise TooManyActiveScans(limit)
        assert done.status is not None
        kind = KINDS.get(done.kind, done.status.value)
        SCANS_STARTED.labels(kind).inc()
        log.info(
            "scan_started",
            scan_id=done.scan_id,
            user=logs.USER(user),
            kind=kind,
            strategies=len(params.strategies),
            symbols=len(params.symbols),
            timeframe=params.timeframe,
            force_refresh=force_refresh,
        )
        if done.kind is not Registered.CREATED:
            joined = done.kind is Registered.JOINED
            return Discovered(done.scan_id, done.status, deduplicated=joined, cached=not joined)
        if has_room:
            self._ask(self._registry.spawn(scan.job(), sent))
        return Discovered(scan.scan_id, done.status)

    def _check_rate(self, user: str) -> None:
        limit = self._rt.settings.discover_rate_per_minute
        if limit:
            wait = self._store.hit_rate(user, limit, 60)
            if wait:
                raise RateLimited(wait, limit)

    # -- reads ---------------------------------------------------------------

    def status(self, user: str, scan_id: str) -> Answer:
        return self._lookup(user, scan_id, with_results=False)

    def results(self, user: str, scan_id: str) -> Answer:
        """A finished scan's results; a running one's so far, as Redis holds them
        (one read of the scan's hash, here or on any worker).

        While Redis cannot be read the owner still answers, with the status alone.
        """
        answer = self._lookup(user, scan_id, with_results=True)
        if answer.source != "actor" or answer.snapshot.results is not None:
            return answer
        return self._owners_partial(user, scan_id, answer)

    def _owners_partial(self, user: str, scan_id: str, answer: Answer) -> Answer:
        """The owner's answer: what Redis holds so far, unless Redis is behind."""
        try:
            partial = self._store.read_partial(scan_id)
        except StoreUnavailable:
            if answer.source == "actor":
                return answer
            raise
        behind = partial is None or partial.snapshot.completed < answer.snapshot.completed
        if answer.source == "actor" and behind:
            return answer  # Redis lost some of it; its owner is writing it back
        if partial is None or partial.snapshot.user != user:
            raise ScanNotFound(scan_id)  # its retention ended just now
        if partial.snapshot.results is not None:
            return Answer(partial.snapshot, "store")  # it finished just now
        return Answer(partial.snapshot, "store", self._partial_body(partial))

    def _partial_body(self, partial: Partial) -> bytes:
        return build_partial(partial.snapshot, partial.results, self._rt.settings.results_cap)

    def list_scans(self, user: str, limit: int) -> list[ScanSnapshot]:
        return self._store.list_scans(user, limit)

    def cancel(self, user: str, scan_id: str) -> Answer:
        """Cancel at the next strategy boundary. The request is in Redis before it is
        acknowledged, so that whoever owns the scan next honours it."""
        status = self._store.request_cancel(scan_id, user)
        if status is None:
            raise ScanNotFound(scan_id)
        if status.terminal:
            raise ScanAlreadyFinished(status)
        if status is ScanStatus.QUEUED:
            self._cancel_queued(scan_id)
        local = self._view.local(scan_id)
        if local is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                self._ask(local.proxy.cancel())  # at once, rather than at the next renewal
        return self._lookup(user, scan_id, with_results=False)

    def _cancel_queued(self, scan_id: str) -> None:
        """Nobody owns a queued scan: claim it here so that it is recorded as cancelled."""
        sent = time.monotonic()
        job = self._store.claim(
            scan_id, self._rt.worker, self._rt.settings.lease_ms, new_epoch_tag()
        )
        if job is not None:
            self._ask(self._registry.spawn(job, sent))

    def _lookup(self, user: str, scan_id: str, with_results: bool) -> Answer:
        try:
            found = self._find(scan_id, with_results)
        except StoreUnavailable:
            READS["store", "unavailable"].inc()
            raise
        snapshot = found.snapshot
        if snapshot is None or snapshot.user != user:
            READS[found.source, "not_found"].inc()
            other = snapshot is not None  # answered 404 all the same: ids are not probed
            (log.warning if other else log.info)(
                "scan_of_another_user" if other else "scan_not_found",
                scan_id=scan_id,
                user=logs.USER(user),
                owner_user=logs.USER(snapshot.user) if snapshot is not None else None,
                source=found.source,
                lookup_method=found.lookup_method,
                failure_reason="other_user" if other else "unknown_or_expired",
            )
            raise ScanNotFound(scan_id)
        READS[found.source, "found"].inc()
        if found.partial is not None and snapshot.results is None:
            return Answer(snapshot, found.source, self._partial_body(found.partial))
        return Answer(snapshot, found.source)

    def _find(self, scan_id: str, with_results: bool) -> Lookup:
        found = self._view.resolve(scan_id)
        method: LookupMethod = "scan_hash_lease_unsure" if found.lease_unsure else "scan_hash"
        if found.local is not None:
            snapshot = self._read(found.local.cell)
            if snapshot is not None and self._view.local(scan_id) is not None:
                return Lookup(snapshot, "actor", "owner_snapshot")
            method = "scan_hash_owner_gone"
        cached = found.cached
        if cached is not None:
            if cached.results is not None or not with_results:
                return Lookup(cached, "cache", "cache")
            method = "scan_hash_for_results"
        if with_results:
            partial = self._store.read_partial(scan_id)
            stored = partial.snapshot if partial is not None else None
        else:
            partial, stored = None, self._store.read(scan_id)
        if stored is not None and stored.status.terminal:
            self._view.remember(stored)
        return Lookup(stored, "store", method, partial)

    # -- reading and asking actors ------------------------------------------------

    def _read(self, cell: SnapshotCell) -> ScanSnapshot | None:
        """Our actor's published snapshot; None when it gave the scan up (Redis then knows)."""
        try:
            return cell.read(self._timeout)
        except CellBusy:
            raise WorkerBusy("the scan's owner is still writing to the store") from None

    def _ask(self, future: pykka.Future[T]) -> T:
        try:
            return future.get(timeout=self._timeout)
        except pykka.Timeout:
            raise WorkerBusy("actor did not answer in time") from None
