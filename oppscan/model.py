"""The scan's domain values: status, parameters, strategy results, snapshots.

All are frozen: they cross threads and actors as messages.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import orjson

SCAN_ID_PREFIX = "scan_"
SCAN_ID = re.compile(SCAN_ID_PREFIX + "[0-9a-f]{32}")
# An id's last two hex digits name the shard its keys live in (`storage/keys.py`).
MAX_SHARDS = 256
DEFAULT_SHARDS = 16

StrategyStatus = Literal["ok", "error", "skipped"]

# Where each strategy of a scan stands: waiting for its series or a thread, running,
# ended with an outcome, or never to end because the scan ended first.
StrategyState = Literal["pending", "running", "ok", "error", "skipped", "cancelled"]
STRATEGY_STATES: tuple[StrategyState, ...] = (
    "pending",
    "running",
    "ok",
    "error",
    "skipped",
    "cancelled",
)
StrategyStates = tuple[tuple[str, StrategyState], ...]  # (strategy, state), by name


class ScanStatus(StrEnum):
    QUEUED = "queued"
    SCANNING = "scanning"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (ScanStatus.COMPLETE, ScanStatus.FAILED, ScanStatus.CANCELLED)


def is_scan_id(value: str) -> bool:
    return SCAN_ID.fullmatch(value) is not None


def now_iso() -> str:
    """UTC now with millisecond precision, the one timestamp format oppscan writes."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def plus_seconds(stamp: str, seconds: float) -> str:
    """`stamp` (our ISO format) moved on by `seconds`, in the same format."""
    moved = parse_iso(stamp) + timedelta(seconds=seconds)
    return moved.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def millis_between(start: str, end: str) -> int:
    return round((parse_iso(end) - parse_iso(start)).total_seconds() * 1000)


@dataclass(frozen=True)
class ScanParams:
    """What was asked: identical params from one user share a scan."""

    strategies: tuple[str, ...]
    symbols: tuple[str, ...]
    timeframe: str

    def digest(self) -> str:
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:32]

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategies": sorted(self.strategies),
            "symbols": sorted(self.symbols),
            "timeframe": self.timeframe,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanParams:
        return cls(
            strategies=tuple(data["strategies"]),
            symbols=tuple(data["symbols"]),
            timeframe=str(data["timeframe"]),
        )


def initial_states(
    strategies: Sequence[str], done: Sequence[StrategyResult] = ()
) -> StrategyStates:
    """A scan's states before its owner started anything: the outcomes recorded, the
    rest pending."""
    ended: dict[str, StrategyState] = {r.name: r.status for r in done}
    return tuple((name, ended.get(name, "pending")) for name in sorted(strategies))


def states_json(states: StrategyStates) -> str:
    """How a scan's record holds its states: one small JSON object."""
    return json.dumps(dict(states), separators=(",", ":"))


def parse_states(raw: str | bytes | None) -> StrategyStates:
    """The states a record holds, by name; none for a record written without them."""
    if not raw:
        return ()
    found = json.loads(raw)
    return tuple((name, found[name]) for name in sorted(found) if found[name] in STRATEGY_STATES)


@dataclass(frozen=True)
class StrategyResult:
    """The recorded outcome of one strategy within one scan."""

    name: str
    status: StrategyStatus
    opportunities: tuple[Mapping[str, Any], ...] = ()
    duration_ms: int = 0
    error: str | None = None

    def performance(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": self.status,
            "opportunities": len(self.opportunities),
            "duration_ms": self.duration_ms,
        }
        if self.error is not None:
            body["reason" if self.status == "skipped" else "error"] = self.error
        return body

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "status": self.status,
                "opportunities": list(self.opportunities),
                "duration_ms": self.duration_ms,
                "error": self.error,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> StrategyResult:
        data = json.loads(raw)
        return cls(
            name=data["name"],
            status=data["status"],
            opportunities=tuple(data["opportunities"]),
            duration_ms=int(data["duration_ms"]),
            error=data.get("error"),
        )


@dataclass(frozen=True)
class Epoch:
    """An owner's fencing token: a generation and a tag of its own.

    The generation grows by one with every claim. The tag makes the token
    unique even when Redis forgets a claim (a crash that loses its last
    writes, a failover to a replica that had not seen them) and hands the same
    generation out again: two owners never hold the same token.
    """

    number: int
    tag: str

    @classmethod
    def first(cls) -> Epoch:
        """The token of a scan that its creator owns from the start."""
        return cls(1, new_epoch_tag())

    def __str__(self) -> str:
        return f"{self.number}.{self.tag}"


QUEUED_EPOCH = Epoch(0, "")


def new_epoch_tag() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class ScanJob:
    """What an owner starts (or resumes) a scan from; `done` is already in Redis.

    `updated_at` is the record's as the owner found it: the first snapshot
    shows it, so that a takeover never moves a client's `updated_at` back.
    """

    scan_id: str
    user: str
    params: ScanParams
    epoch: Epoch
    created_at: str
    started_at: str
    updated_at: str
    done: tuple[StrategyResult, ...] = ()
    cancel_requested: bool = False
    states: StrategyStates = ()  # as Redis holds them (none for a scan just registered)


@dataclass(frozen=True)
class ScanSnapshot:
    """What a reader may see of a scan at one moment.

    `results` is the stored results document (bytes, served as is) once the scan
    is terminal; None before.
    """

    scan_id: str
    user: str
    status: ScanStatus
    total: int
    completed: int
    found: int
    created_at: str
    updated_at: str
    completed_at: str | None = None
    error: str | None = None
    results: bytes | None = field(default=None, repr=False)
    expires_at: str | None = None  # a finished scan's: when its retention ends
    states: StrategyStates = ()  # each strategy's state; none in a record older than them
    # What the scan asked for, where the reader has it at hand (the scan list).
    params: ScanParams | None = field(default=None, compare=False, repr=False)

    def status_body(self) -> dict[str, Any]:
        percentage = round(100.0 * self.completed / self.total, 1) if self.total else 0.0
        body: dict[str, Any] = {
            "scan_id": self.scan_id,
            "status": self.status.value,
            "progress": {
                "strategies_completed": self.completed,
                "total_strategies": self.total,
                "percentage": percentage,
                "opportunities_found_so_far": self.found,
            },
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "completed_at": self.completed_at,
        }
        if self.states:
            body["strategies"] = dict(self.states)
        if self.error is not None:
            body["error"] = self.error
        if self.expires_at is not None:
            body["expires_at"] = self.expires_at
        return body

    def listed_body(self) -> dict[str, Any]:
        """The status body with what the scan asked for, for the scan list."""
        body = self.status_body()
        if self.params is not None:
            body["request"] = {
                "strategies": list(self.params.strategies),
                "symbols": len(self.params.symbols),
                "timeframe": self.params.timeframe,
            }
        return body

    @functools.cached_property
    def status_json(self) -> bytes:
        """`status_body()` as JSON, rendered once: a snapshot never changes, and
        every poll of a finished scan, or of one between two strategies, reads
        the same snapshot again."""
        return orjson.dumps(self.status_body())

    @functools.cached_property
    def status_etag(self) -> str:
        """The status body's entity tag: a digest of its bytes, which every worker
        renders alike for the same state of the scan."""
        return entity_tag(self.status_json)

    @functools.cached_property
    def results_etag(self) -> str | None:
        """The stored results document's entity tag (None before the scan finished)."""
        return None if self.results is None else entity_tag(self.results)

    def poll_after(self, now: datetime) -> int:
        """Seconds a client had best wait before polling a running scan again: the
        scan's own pace so far (time per strategy done), kept within 1 to 5 s."""
        elapsed = (now - parse_iso(self.created_at)).total_seconds()
        pace = elapsed / max(1, self.completed)
        return max(MIN_POLL_S, min(MAX_POLL_S, math.ceil(pace)))


MIN_POLL_S, MAX_POLL_S = 1, 5


def entity_tag(body: bytes) -> str:
    """A strong entity tag of `body` (unquoted, as Falcon takes it)."""
    return hashlib.blake2b(body, digest_size=12).hexdigest()


def rank(opportunities: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Best first: score, then expected return, then a stable tie-break."""
    return sorted(
        opportunities,
        key=lambda o: (
            -float(o["score"]),
            -float(o["expected_return"]),
            o["symbol"],
            o["strategy"],
        ),
    )
