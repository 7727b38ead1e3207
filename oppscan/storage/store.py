"""ScanStore: every read and write oppscan makes to Redis, one method each.

Each method is one round trip and goes through the circuit breaker, so it
either answers promptly or raises `StoreUnavailable`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from oppscan.model import ScanJob, ScanParams, ScanSnapshot, ScanStatus, StrategyResult, now_iso
from oppscan.storage import scripts
from oppscan.storage.client import OUTAGE_ERRORS, CircuitBreaker, ThreadConnections
from oppscan.storage.keys import Keys

T = TypeVar("T")

STATUS_FIELDS = (
    "user",
    "status",
    "total",
    "completed",
    "found",
    "created_at",
    "updated_at",
    "completed_at",
    "error",
)
RESULT_FIELDS = (*STATUS_FIELDS, "results")
USER_INDEX_CAP = 1000


@dataclass(frozen=True)
class NewScan:
    """A scan record as `discover` registers it: owned by `owner`, or queued for anyone."""

    scan_id: str
    user: str
    params: ScanParams
    created_at: str
    owner: str | None

    @property
    def epoch(self) -> int:
        return 1 if self.owner else 0

    def fields(self) -> list[str]:
        status = ScanStatus.SCANNING if self.owner else ScanStatus.QUEUED
        pairs = {
            "id": self.scan_id,
            "user": self.user,
            "params": json.dumps(self.params.to_dict(), separators=(",", ":")),
            "digest": self.params.digest(),
            "status": status.value,
            "total": str(len(self.params.strategies)),
            "completed": "0",
            "found": "0",
            "created_at": self.created_at,
            "updated_at": self.created_at,
            "started_at": self.created_at,
            "owner": self.owner or "",
            "epoch": str(self.epoch),
            "lease": "0",
        }
        return [item for pair in pairs.items() for item in pair]


@dataclass(frozen=True)
class LeaseState:
    """What renewing one lease found."""

    scan_id: str
    epoch: int
    held: bool
    cancel_requested: bool


@dataclass(frozen=True)
class Recorded:
    """Redis's state of a scan right after a strategy result was written."""

    completed: int
    found: int
    updated_at: str
    cancel_requested: bool


class ScanStore:
    def __init__(self, client: redis.Redis, keys: Keys, breaker: CircuitBreaker) -> None:
        self._client = client
        self._reads = ThreadConnections(client.connection_pool)
        self._keys = keys
        self.breaker = breaker
        self._create = client.register_script(scripts.CREATE)
        self._claim_dedup = client.register_script(scripts.CLAIM_DEDUP)
        self._discard = client.register_script(scripts.DISCARD)
        self._record = client.register_script(scripts.RECORD_STRATEGY)
        self._finish = client.register_script(scripts.FINISH)
        self._cancel = client.register_script(scripts.REQUEST_CANCEL)
        self._claimable = client.register_script(scripts.CLAIMABLE)
        self._claim = client.register_script(scripts.CLAIM)
        self._renew = client.register_script(scripts.RENEW)
        self._release = client.register_script(scripts.RELEASE)
        self._rate = client.register_script(scripts.RATE)

    def close(self) -> None:
        self._reads.close()
        self._client.close()

    def _call(self, fn: Callable[[], T]) -> T:
        return self.breaker.call(fn)

    def ping(self) -> bool:
        return bool(self._call(self._client.ping))

    def dedup_target(self, user: str, digest: str) -> str | None:
        raw = self._call(lambda: self._client.get(self._keys.dedup(user, digest)))
        return _text(raw)

    def probe(self) -> bool:
        """Ping past the circuit breaker on fresh connections; close the breaker if it answers."""
        try:
            # Idle connections may point at the server that went away; in-use ones
            # belong to other threads, which find out for themselves.
            self._client.connection_pool.disconnect(inuse_connections=False)
            self._client.ping()
        except OUTAGE_ERRORS:
            return False
        self.breaker.reset()
        return True

    def create(self, scan: NewScan, lease_ms: int) -> bool:
        """Register the scan: owned ones get a lease of `lease_ms`, others are queued."""
        k = self._keys
        argv: list[str | int | float] = [
            scan.scan_id,
            lease_ms if scan.owner else 0,
            time.time(),
            *scan.fields(),
        ]
        keys = [k.scan(scan.scan_id), k.running(), k.pending(), k.user_scans(scan.user)]
        return bool(self._call(lambda: self._create(keys=keys, args=argv)))

    def hit_rate(self, user: str, limit: int, window_s: int) -> int:
        """Count one discover; 0 when within `limit` per window, else seconds to wait."""
        window = int(time.time()) // window_s
        keys = [self._keys.discover_rate(user, window)]
        return int(self._call(lambda: self._rate(keys=keys, args=[limit, window_s])))

    def claimable(self, limit: int) -> list[str]:
        """Ids of scans whose lease lapsed, then of queued ones."""
        keys = [self._keys.running(), self._keys.pending()]
        raw = self._call(lambda: self._claimable(keys=keys, args=[limit]))
        return [_text(i) or "" for i in raw]

    def claim(self, scan_id: str, owner: str, lease_ms: int) -> ScanJob | None:
        """Take the scan over under a new epoch; None when it is not claimable."""
        k = self._keys
        keys = [k.scan(scan_id), k.running(), k.pending()]
        argv: list[str | int] = [scan_id, lease_ms, owner, now_iso()]
        raw = self._call(lambda: self._claim(keys=keys, args=argv))
        if not raw:
            return None
        fields = {_text(raw[i]) or "": raw[i + 1] for i in range(0, len(raw), 2)}
        return _job(scan_id, fields)

    def renew(self, leases: Sequence[tuple[str, int]], lease_ms: int) -> list[LeaseState]:
        """Extend every lease in one round trip; says which were lost or asked to cancel."""
        if not leases:
            return []
        keys = [self._keys.running(), *(self._keys.scan(sid) for sid, _ in leases)]
        argv: list[str | int] = [lease_ms]
        for scan_id, epoch in leases:
            argv += [scan_id, epoch]
        raw = self._call(lambda: self._renew(keys=keys, args=argv))
        return [
            LeaseState(sid, epoch, int(code) > 0, int(code) == 2)
            for (sid, epoch), code in zip(leases, raw, strict=True)
        ]

    def release(self, scan_id: str, epoch: int) -> bool:
        """Give the scan back so that another worker claims it at once."""
        keys = [self._keys.scan(scan_id), self._keys.running()]
        return bool(self._call(lambda: self._release(keys=keys, args=[scan_id, epoch])))

    def claim_dedup(
        self, user: str, digest: str, expected: str | None, new: str, max_active: int = 0
    ) -> int:
        """Point the dedup key at `new` if it still points at `expected`.

        1 done (and `new` counts as one of the user's active scans), 0 another scan
        won, -1 the user already has `max_active` active scans.
        """
        keys = [self._keys.dedup(user, digest), self._keys.user_active(user)]
        argv: list[str | int] = [expected or "", new, max_active, *self._keys.scan_around_id()]
        return int(self._call(lambda: self._claim_dedup(keys=keys, args=argv)))

    def discard(self, scan_id: str, user: str) -> None:
        k = self._keys
        keys = [k.scan(scan_id), k.running(), k.pending(), k.user_scans(user), k.user_active(user)]
        self._call(lambda: self._discard(keys=keys, args=[scan_id]))

    def read(self, scan_id: str, with_results: bool = False) -> ScanSnapshot | None:
        names = RESULT_FIELDS if with_results else STATUS_FIELDS
        key = self._keys.scan(scan_id)
        raw = self._call(lambda: self._reads.execute("HMGET", key, *names))
        return _snapshot(scan_id, dict(zip(names, raw, strict=True)))

    def record_strategy(
        self, scan_id: str, epoch: int, result: StrategyResult, updated_at: str
    ) -> Recorded | None:
        """Write one strategy's result; None when `epoch` no longer owns the scan."""
        argv: list[str | int] = [
            epoch,
            "s:" + result.name,
            result.to_json(),
            len(result.opportunities),
            updated_at,
        ]
        keys = [self._keys.scan(scan_id)]
        ok, completed, found, stamp, cancel = self._call(lambda: self._record(keys=keys, args=argv))
        if ok != 1:
            return None
        return Recorded(int(completed), int(found), _text(stamp) or updated_at, bool(cancel))

    def finish(
        self,
        snapshot: ScanSnapshot,
        epoch: int,
        digest: str,
        ttl: int,
    ) -> bool:
        """Flip to a terminal status with its results and expire the scan, atomically."""
        k = self._keys
        sid = snapshot.scan_id
        keys = [
            k.scan(sid),
            k.running(),
            k.pending(),
            k.dedup(snapshot.user, digest),
            k.user_active(snapshot.user),
        ]
        argv: list[str | int | bytes] = [
            epoch,
            snapshot.status.value,
            snapshot.results or b"",
            snapshot.completed_at or "",
            snapshot.error or "",
            ttl,
            sid,
        ]
        return bool(self._call(lambda: self._finish(keys=keys, args=argv)))

    def request_cancel(self, scan_id: str, user: str) -> ScanStatus | None:
        keys = [self._keys.scan(scan_id)]
        raw = self._call(lambda: self._cancel(keys=keys, args=[user]))
        text = _text(raw)
        return ScanStatus(text) if text else None

    def list_scans(self, user: str, limit: int) -> list[ScanSnapshot]:
        """The user's retained scans, newest first; forgets ids that expired."""
        index = self._keys.user_scans(user)
        ids = [_text(i) or "" for i in self._call(lambda: self._client.zrevrange(index, 0, -1))]
        rows = self._read_many(ids[: limit * 2 + 16])
        gone = [sid for sid, row in zip(ids, rows, strict=False) if row is None]
        if gone or len(ids) > USER_INDEX_CAP:
            self._call(lambda: self._prune(index, gone))
        found = [row for row in rows if row is not None and row.user == user]
        return found[:limit]

    def _read_many(self, ids: Sequence[str]) -> list[ScanSnapshot | None]:
        def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for sid in ids:
                pipe.hmget(self._keys.scan(sid), STATUS_FIELDS)
            return pipe.execute()

        rows = self._call(run) if ids else []
        return [
            _snapshot(sid, dict(zip(STATUS_FIELDS, raw, strict=True)))
            for sid, raw in zip(ids, rows, strict=True)
        ]

    def _prune(self, index: str, gone: Sequence[str]) -> None:
        pipe = self._client.pipeline(transaction=False)
        if gone:
            pipe.zrem(index, *gone)
        pipe.zremrangebyrank(index, 0, -USER_INDEX_CAP - 1)
        pipe.execute()


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _job(scan_id: str, fields: dict[str, Any]) -> ScanJob:
    done = tuple(
        StrategyResult.from_json(value) for name, value in fields.items() if name.startswith("s:")
    )
    return ScanJob(
        scan_id=scan_id,
        user=_text(fields["user"]) or "",
        params=ScanParams.from_dict(json.loads(fields["params"])),
        epoch=int(fields["epoch"]),
        created_at=_text(fields["created_at"]) or "",
        started_at=_text(fields["started_at"]) or "",
        done=done,
        cancel_requested=_text(fields.get("cancel")) == "1",
    )


def _snapshot(scan_id: str, raw: dict[str, Any]) -> ScanSnapshot | None:
    user, status = _text(raw["user"]), _text(raw["status"])
    if user is None or status is None:
        return None
    results = raw.get("results")
    return ScanSnapshot(
        scan_id=scan_id,
        user=user,
        status=ScanStatus(status),
        total=int(raw["total"] or 0),
        completed=int(raw["completed"] or 0),
        found=int(raw["found"] or 0),
        created_at=_text(raw["created_at"]) or "",
        updated_at=_text(raw["updated_at"]) or "",
        completed_at=_text(raw["completed_at"]),
        error=_text(raw["error"]),
        results=bytes(results) if results else None,
    )
