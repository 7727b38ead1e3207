"""ScanStore: every read and write oppscan makes to Redis, one method each.

Each method is one round trip and goes through the circuit breaker, so it
either answers promptly or raises `StoreUnavailable`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any, TypeVar

import redis
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.crc import REDIS_CLUSTER_HASH_SLOTS
from redis.exceptions import ResponseError

from oppscan.model import (
    QUEUED_EPOCH,
    Epoch,
    ScanJob,
    ScanParams,
    ScanSnapshot,
    ScanStatus,
    StrategyResult,
    StrategyStates,
    initial_states,
    now_iso,
    parse_iso,
    parse_states,
    states_json,
)
from oppscan.storage import scripts
from oppscan.storage.client import (
    CircuitBreaker,
    ClusterReads,
    Connector,
    StoreUnavailable,
    ThreadConnections,
    is_outage,
)
from oppscan.storage.keys import Keys, shard_of_scan
from oppscan.storage.market_store import MarketStore
from oppscan.storage.scripts import lua

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
    "expires_at",
    "states",
)
RESULT_FIELDS = (*STATUS_FIELDS, "results")
LISTED_FIELDS = (*STATUS_FIELDS, "params")
USER_INDEX_CAP = 1000


@dataclass(frozen=True)
class NewScan:
    """A scan record as `discover` registers it: owned by `owner`, or queued for anyone."""

    scan_id: str
    user: str
    params: ScanParams
    created_at: str
    owner: str | None
    epoch: Epoch = field(default_factory=Epoch.first)  # the owner's, when there is one

    def job(self) -> ScanJob:
        """What its owner starts the scan from."""
        created = self.created_at
        return ScanJob(self.scan_id, self.user, self.params, self.epoch, created, created, created)

    def fields(self) -> list[str]:
        status = ScanStatus.SCANNING if self.owner else ScanStatus.QUEUED
        epoch = self.epoch if self.owner else QUEUED_EPOCH
        pairs = {
            "status": status.value,
            "completed": "0",
            "found": "0",
            "updated_at": self.created_at,
            "owner": self.owner or "",
            "lease": "0",
            "states": states_json(initial_states(self.params.strategies)),
            **record_fields(self.user, self.params, epoch, self.created_at, self.created_at),
        }
        return [item for pair in pairs.items() for item in pair]


def record_fields(
    user: str, params: ScanParams, epoch: Epoch, created_at: str, started_at: str
) -> dict[str, str]:
    """What a scan's record says of who asked what, and who runs it."""
    return {
        "user": user,
        "params": json.dumps(params.to_dict(), separators=(",", ":")),
        "total": str(len(params.strategies)),
        "created_at": created_at,
        "started_at": started_at,
        "epoch": str(epoch.number),
        "epoch_tag": epoch.tag,
    }


@dataclass(frozen=True)
class Partial:
    """A scan as Redis holds it, with every strategy result recorded so far."""

    snapshot: ScanSnapshot
    results: tuple[StrategyResult, ...]  # by strategy name


class Written(Enum):
    """How a fenced write ended, when it did not simply land."""

    FENCED = "fenced"  # another owner holds the scan, or it finished
    FORGOTTEN = "forgotten"  # Redis lost the writer's claim: it writes its record back


WRITE_CODES = {0: Written.FENCED, -1: Written.FORGOTTEN}


class Restored(Enum):
    """What writing a record back did."""

    WRITTEN = "written"
    FINISHED = "finished"  # this owner's final write had landed after all
    FENCED = "fenced"  # another owner holds the scan, or someone else finished it
    NOT_OURS = "not_ours"  # gone, and the owner's lease did not surely hold: not recreated


RESTORE_CODES = {1: Restored.WRITTEN, 2: Restored.FINISHED, 0: Restored.FENCED}


class Registered(StrEnum):
    """What `register` did."""

    CREATED = "created"  # a new scan, owned here or queued
    JOINED = "joined"  # the identical scan that runs
    REUSED = "reused"  # the identical scan that completed
    LIMITED = "limited"  # nothing: the user is at the active limit


@dataclass(frozen=True)
class Registration:
    kind: Registered
    scan_id: str
    status: ScanStatus | None


@dataclass(frozen=True)
class LeaseState:
    """What renewing one lease found."""

    scan_id: str
    epoch: Epoch
    held: bool
    cancel_requested: bool = False
    forgotten: bool = False  # Redis lost the claim: the owner writes its record back


@dataclass(frozen=True)
class Recorded:
    """Redis's state of a scan right after a strategy result was written."""

    completed: int
    found: int
    updated_at: str
    cancel_requested: bool


class ServerWatch:
    """Which Redis server process answers, and whether it changed a moment ago.

    A Redis that restarted (empty, or from an append-only file that lacks its
    last writes) or a replica that took over holds less than its predecessor
    did. Its owners write their scans back as soon as their steward notices
    (one tick); until `gate` seconds after this process noticed, a read that
    finds a running scan, or none, is an outage rather than an answer that
    could show progress going back, or a live scan as not found.
    """

    def __init__(self, gate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.gate = gate
        self.run_ids: frozenset[str] | None = None
        self._clock = clock
        self._changed_at: float | None = None
        self._fresh = False  # changed, and no read answered since
        self._unannounced = False
        self._lock = threading.Lock()

    def note(self, run_ids: frozenset[str]) -> None:
        """The run ids of the server processes that answer now: one, or a cluster's
        primaries. After the first note, one not seen before is a change of server
        (one gone is not: a cluster's failed master is replaced by a new one)."""
        with self._lock:
            if self.run_ids is not None and run_ids - self.run_ids:
                self._changed()
            self.run_ids = run_ids

    def note_primary(self, run_id: str) -> None:
        """A cluster's primary answered a new connection: a change if it is a process
        not seen before (restarted in place, or a replica promoted)."""
        with self._lock:
            if self.run_ids is not None and run_id not in self.run_ids:
                self._changed()
                self.run_ids |= {run_id}

    def _changed(self) -> None:
        self._changed_at = None  # starts with the first read it answers
        self._fresh = True
        self._unannounced = True

    def gating(self) -> bool:
        """Called after a read was answered: the gate runs from the first such read
        after a change (a Redis still loading its data answers none)."""
        if self._fresh:
            with self._lock:
                if self._fresh:
                    self._fresh, self._changed_at = False, self._clock()
        changed = self._changed_at
        return changed is not None and self._clock() - changed < self.gate

    def take_change(self) -> bool:
        """True once after each change (for the steward, which has the owners write back)."""
        with self._lock:
            changed, self._unannounced = self._unannounced, False
        return changed


class ScanStore:
    def __init__(
        self,
        client: Connector,
        keys: Keys,
        breaker: CircuitBreaker,
        restart_gate: float = 2.0,
    ) -> None:
        self._client = client
        self._server = ServerWatch(restart_gate)
        client.greet = self._greet_cluster_node  # a cluster's new connections (not made yet)
        self._keys = keys
        self._reads: ThreadConnections | ClusterReads
        if client.cluster:
            self._reads = ClusterReads(client)
        else:
            server = client()  # made, not connected
            assert isinstance(server, redis.Redis)
            self._reads = ThreadConnections(server.connection_pool, self._greet)
        self._primaries: frozenset[str] = frozenset()  # a cluster's, as the client last saw
        self.breaker = breaker
        self._register = lua(scripts.REGISTER)
        self._record = lua(scripts.RECORD_STRATEGY)
        self._states = lua(scripts.WRITE_STATES)
        self._finish = lua(scripts.FINISH)
        self._restore = lua(scripts.RESTORE)
        self._cancel = lua(scripts.REQUEST_CANCEL)
        self._claimable = lua(scripts.CLAIMABLE)
        self._claim = lua(scripts.CLAIM)
        self._renew = lua(scripts.RENEW)
        self._release = lua(scripts.RELEASE)
        self._rate = lua(scripts.RATE)

    def close(self) -> None:
        self._reads.close()
        self._client.close()

    def market(self) -> MarketStore:
        """The market layer's keys, on this store's connections with a circuit breaker
        of its own: a slow series write never makes status reads answer 503."""
        return MarketStore(self._client, self._keys, CircuitBreaker("market"))

    def _run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One script on this store's client, through the circuit breaker."""
        return self._call(lambda: script(keys=keys, args=args, client=self._client()))

    def _call(self, fn: Callable[[], T]) -> T:
        return self.breaker.call(fn)

    def ping(self) -> bool:
        return bool(self._call(lambda: self._client().ping()))

    def probe(self) -> bool:
        """Ask past the circuit breaker, on fresh connections, whether the server takes
        writes again; close the breaker if it does."""
        try:
            up = self._takes_writes()
        except StoreUnavailable:
            return False  # another thread is making the cluster's client
        except Exception as exc:
            if not is_outage(exc):
                raise
            return False
        if up:
            self.breaker.reset()
        return up

    def _takes_writes(self) -> bool:
        """A replica answers PING but refuses every write: it counts as down. A cluster
        is up once it names a primary for every slot and each of them answers."""
        client = self._client()
        if isinstance(client, RedisCluster):
            client.nodes_manager.initialize()  # the slots as assigned now
            if len(client.nodes_manager.slots_cache) < REDIS_CLUSTER_HASH_SLOTS:
                return False
            self._note_primaries(client)
            return True
        # Idle connections may point at the server that went away; in-use ones
        # belong to other threads, which find out for themselves.
        client.connection_pool.disconnect(inuse_connections=False)
        return _text(client.role()[0]) == "master"

    def new_scan_id(self, user: str) -> str:
        """A fresh id for a scan of `user`, in the user's shard."""
        return self._keys.new_scan_id(user)

    def _note_primaries(self, client: RedisCluster) -> None:
        """Which server processes are the cluster's primaries now (a failover or a
        restart in place changes them), from each primary's `INFO`."""
        primaries = _primary_names(client)
        infos = client.info("server", target_nodes=RedisCluster.PRIMARIES)
        if "run_id" in infos:  # one primary: its reply, not one per node
            infos = {"": infos}
        self._server.note(frozenset(str(info["run_id"]) for info in infos.values()))
        self._primaries = primaries

    def register(
        self, scan: NewScan, lease_ms: int, force_refresh: bool = False, max_active: int = 0
    ) -> Registration:
        """Join the identical running scan, reuse a complete one, or register `scan`
        (whose id `new_scan_id` made for its user).

        One atomic step: a retry after a timeout joins what the first attempt
        registered. A new scan owned by `scan.owner` gets a lease of `lease_ms`;
        one without an owner is queued for any worker.
        """
        k = self._keys
        shard = k.shard_of_user(scan.user)
        if shard_of_scan(scan.scan_id) != shard:
            raise ValueError(f"{scan.scan_id} is not an id in {scan.user!r}'s shard")
        digest = scan.params.digest()
        keys = [
            k.dedup(scan.user, digest),
            k.user_active(scan.user),
            k.user_scans(scan.user),
            k.running(shard),
            k.pending(shard),
            k.scan(scan.scan_id),
        ]
        argv: list[str | int | float] = [
            scan.scan_id,
            lease_ms if scan.owner else 0,
            time.time(),
            int(force_refresh),
            max_active,
            k.scan_prefix(shard),
            *scan.fields(),
        ]
        kind, scan_id, status = self._run(self._register, keys, argv)
        text = _text(status)
        status_now = ScanStatus(text) if text else None
        return Registration(Registered(_text(kind) or ""), _text(scan_id) or "", status_now)

    def hit_rate(self, user: str, limit: int, window_s: int) -> int:
        """Count one discover; 0 when within `limit` per window, else seconds to wait."""
        window = int(time.time()) // window_s
        keys = [self._keys.discover_rate(user, window)]
        return int(self._run(self._rate, keys, [limit, window_s]))

    def claimable(self, limit: int) -> list[str]:
        """Ids of the `limit` scans whose lease lapsed longest ago, then of the `limit`
        queued longest, over every shard."""
        lapsed: list[tuple[float, str]] = []
        queued: list[tuple[float, str]] = []
        for group in self._shard_groups():
            keys = [self._keys.running(s) for s in group] + [self._keys.pending(s) for s in group]
            found = self._run(self._claimable, keys, [limit])
            lapsed += _scored(found[0])
            queued += _scored(found[1])
        return [sid for _, sid in sorted(lapsed)[:limit] + sorted(queued)[:limit]]

    def claim(self, scan_id: str, owner: str, lease_ms: int, tag: str) -> ScanJob | None:
        """Take the scan over under a new epoch tagged `tag`; None when it is not claimable.

        Sent again with the same tag (the first answer timed out), it answers the
        claim the first attempt made.
        """
        k = self._keys
        shard = shard_of_scan(scan_id)
        keys = [k.scan(scan_id), k.running(shard), k.pending(shard)]
        argv: list[str | int] = [scan_id, lease_ms, owner, now_iso(), tag]
        raw = self._run(self._claim, keys, argv)
        if not raw:
            return None
        fields = {_text(raw[i]) or "": raw[i + 1] for i in range(0, len(raw), 2)}
        return _job(scan_id, fields)

    def renew(self, leases: Sequence[tuple[str, Epoch]], lease_ms: int) -> list[LeaseState]:
        """Extend every lease in one round trip; says which were lost, forgotten or
        asked to cancel."""
        codes: dict[str, int] = {}
        for batch in self._by_shard_group(leases):
            keys: list[str] = []
            argv: list[str | int] = [lease_ms]
            for scan_id, epoch in batch:
                keys += [self._keys.running(shard_of_scan(scan_id)), self._keys.scan(scan_id)]
                argv += [scan_id, epoch.number, epoch.tag]
            raw = self._run(self._renew, keys, argv)
            codes.update(zip((sid for sid, _ in batch), map(int, raw), strict=True))
        return [
            LeaseState(sid, epoch, codes[sid] in (1, 2), codes[sid] == 2, codes[sid] == 3)
            for sid, epoch in leases
        ]

    def _group(self, shard: int) -> int:
        """Which shards one script may touch together: on a cluster each shard alone
        (one slot); on one server all of them, in one round trip."""
        return shard if self._client.cluster else 0

    def _shard_groups(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for shard in range(self._keys.shards):
            groups.setdefault(self._group(shard), []).append(shard)
        return list(groups.values())

    def _by_shard_group(self, leases: Sequence[tuple[str, Epoch]]) -> list[list[tuple[str, Epoch]]]:
        batches: dict[int, list[tuple[str, Epoch]]] = {}
        for lease in leases:
            batches.setdefault(self._group(shard_of_scan(lease[0])), []).append(lease)
        return list(batches.values())

    def release(self, scan_id: str, epoch: Epoch) -> bool | Written:
        """Give the scan back so that another worker claims it at once: True when
        handed back, False when not ours, FORGOTTEN when Redis lost the claim."""
        keys = [self._keys.scan(scan_id), self._keys.running(shard_of_scan(scan_id))]
        argv: list[str | int] = [scan_id, epoch.number, epoch.tag]
        code = int(self._run(self._release, keys, argv))
        return Written.FORGOTTEN if code < 0 else code == 1

    def read(self, scan_id: str) -> ScanSnapshot | None:
        """The scan's status as Redis holds it; None when it has none. Just after
        Redis changed (`ServerWatch`) only a finished scan is an answer."""
        key = self._keys.scan(scan_id)
        raw = self._call(lambda: self._reads.execute("HMGET", key, *STATUS_FIELDS))
        found = _snapshot(scan_id, dict(zip(STATUS_FIELDS, raw, strict=True)))
        gated = self._server.gating()
        if gated and (found is None or not found.status.terminal):
            raise StoreUnavailable("store_restarted")
        return found

    def read_partial(self, scan_id: str) -> Partial | None:
        """The scan with its results document once finished, and the results its
        strategies recorded so far, in one read; None when Redis has no such scan.
        Gated like `read` just after Redis changed."""
        key = self._keys.scan(scan_id)
        raw = self._call(lambda: self._reads.execute("HGETALL", key))
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
        fields = {_text(name) or "": value for name, value in pairs}  # RESP3 map or RESP2 list
        found = _snapshot(scan_id, {name: fields.get(name) for name in RESULT_FIELDS})
        if self._server.gating() and (found is None or not found.status.terminal):
            raise StoreUnavailable("store_restarted")
        if found is None:
            return None
        done = tuple(
            sorted(
                (StrategyResult.from_json(v) for n, v in fields.items() if n.startswith("s:")),
                key=lambda r: r.name,
            )
        )
        return Partial(found, done)

    def server_restarted(self) -> bool:
        """Ask the server, on this thread's connection; True once after the Redis
        process answering changed (a restart, a failover). On a cluster: once the
        client's primaries differ from those last seen, ask each of them."""
        client = self._client.made
        if not self._client.cluster:
            self._call(lambda: self._reads.execute("PING"))
        elif client is None:
            self._call(self._client)  # makes the cluster's client: asks a node
        elif isinstance(client, RedisCluster) and _primary_names(client) != self._primaries:
            self._call(lambda: self._note_primaries(client))
        return self._server.take_change()

    def _greet(self, conn: Any) -> None:
        """Every new read connection first learns which server process it reached."""
        self._server.note(frozenset({_run_id(conn)}))

    def _greet_cluster_node(self, conn: Any) -> None:
        """Every new connection to a cluster's node learns which process it reached: a
        primary not seen before is a change, noticed before the connection's first
        reply is used (a replica promoted, a primary restarted in place)."""
        try:
            run_id = _run_id(conn)
            known = self._server.run_ids
            if known is None or run_id in known:
                return
            conn.send_command("ROLE")
            role = _text(conn.read_response()[0])
        except ResponseError:
            return  # INFO or ROLE not allowed to this user: the probe's sweep still sees
        if role == "master":
            self._server.note_primary(run_id)

    def record_strategy(
        self,
        scan_id: str,
        epoch: Epoch,
        result: StrategyResult,
        updated_at: str,
        durable: int = 0,
        states: StrategyStates = (),
    ) -> Recorded | Written:
        """Write one strategy's result and the scan's `states`, unless `epoch` no
        longer owns the scan.

        `durable` is how many results the owner holds as written: a record with
        fewer lost some (Redis lost its last writes) and answers FORGOTTEN.
        """
        argv: list[str | int] = [
            epoch.number,
            epoch.tag,
            "s:" + result.name,
            result.to_json(),
            len(result.opportunities),
            updated_at,
            durable,
            states_json(states) if states else "",
        ]
        keys = [self._keys.scan(scan_id)]
        code, completed, found, stamp, cancel = self._run(self._record, keys, argv)
        if int(code) != 1:
            return WRITE_CODES[int(code)]
        return Recorded(int(completed), int(found), _text(stamp) or updated_at, bool(cancel))

    def write_states(self, scan_id: str, epoch: Epoch, states: StrategyStates) -> Written | None:
        """Write the scan's strategy states (which run now), unless `epoch` no longer
        owns it; None once written."""
        keys = [self._keys.scan(scan_id)]
        argv: list[str | int] = [epoch.number, epoch.tag, states_json(states)]
        code = int(self._run(self._states, keys, argv))
        return None if code == 1 else WRITE_CODES[code]

    def finish(self, snapshot: ScanSnapshot, epoch: Epoch, digest: str, ttl: int) -> Written | None:
        """Flip to a terminal status with its results and expire the scan, atomically.

        None once finished (now, or by this same owner before); else why not.
        """
        k = self._keys
        sid = snapshot.scan_id
        shard = shard_of_scan(sid)
        keys = [
            k.scan(sid),
            k.running(shard),
            k.pending(shard),
            k.dedup(snapshot.user, digest),
            k.user_active(snapshot.user),
            k.user_scans(snapshot.user),
        ]
        argv: list[str | int | bytes] = [
            epoch.number,
            epoch.tag,
            snapshot.status.value,
            snapshot.results or b"",
            snapshot.completed_at or "",
            snapshot.error or "",
            ttl,
            sid,
            k.scan_prefix(shard),
            snapshot.completed,
            snapshot.expires_at or "",
            states_json(snapshot.states) if snapshot.states else "",
        ]
        code = int(self._run(self._finish, keys, argv))
        return None if code == 1 else WRITE_CODES[code]

    def restore(
        self,
        job: ScanJob,
        owner: str,
        done: Sequence[StrategyResult],
        updated_at: str,
        lease_ms: int,
        recreate: bool = True,
        states: StrategyStates = (),
    ) -> Restored:
        """Write back the record of a running scan that Redis lost, whole or in part,
        with the results `done` and the owner's `states` (by default: `done`'s outcomes,
        the rest pending). `recreate`: the owner's lease surely held, so a record that
        is gone or older than its claim may be made anew."""
        k = self._keys
        shard = shard_of_scan(job.scan_id)
        keys = [
            k.scan(job.scan_id),
            k.running(shard),
            k.user_scans(job.user),
            k.user_active(job.user),
            k.dedup(job.user, job.params.digest()),
            k.pending(shard),
        ]
        pairs = {
            **record_fields(job.user, job.params, job.epoch, job.created_at, job.started_at),
            "status": ScanStatus.SCANNING.value,
            "owner": owner,
            "states": states_json(states or initial_states(job.params.strategies, done)),
            **{"s:" + r.name: r.to_json() for r in done},
        }
        argv: list[str | int | float] = [
            job.scan_id,
            lease_ms,
            job.epoch.number,
            job.epoch.tag,
            parse_iso(job.created_at).timestamp(),
            int(recreate),
            updated_at,
            *(item for pair in pairs.items() for item in pair),
        ]
        code = int(self._run(self._restore, keys, argv))
        return RESTORE_CODES.get(code, Restored.NOT_OURS)

    def request_cancel(self, scan_id: str, user: str) -> ScanStatus | None:
        """Flag the scan for cancel; its status, or None when no such scan of `user`
        (an outage while Redis has just changed, as for reads)."""
        keys = [self._keys.scan(scan_id)]
        raw = self._run(self._cancel, keys, [user])
        text = _text(raw)
        if text is None and self._server.gating():
            raise StoreUnavailable("store_restarted")
        return ScanStatus(text) if text else None

    def list_scans(self, user: str, limit: int) -> list[ScanSnapshot]:
        """The user's retained scans, newest first; forgets ids that expired."""
        index = self._keys.user_scans(user)
        ids = [_text(i) or "" for i in self._call(lambda: self._client().zrevrange(index, 0, -1))]
        rows = self._read_many(ids[: limit * 2 + 16])
        gone = [sid for sid, row in zip(ids, rows, strict=False) if row is None]
        if gone or len(ids) > USER_INDEX_CAP:
            self._call(lambda: self._prune(index, gone))
        found = [row for row in rows if row is not None and row.user == user]
        return found[:limit]

    def _read_many(self, ids: Sequence[str]) -> list[ScanSnapshot | None]:
        def run() -> list[Any]:
            pipe = self._client().pipeline(transaction=False)
            for sid in ids:
                pipe.hmget(self._keys.scan(sid), LISTED_FIELDS)
            return pipe.execute()

        rows = self._call(run) if ids else []
        return [
            _snapshot(sid, dict(zip(LISTED_FIELDS, raw, strict=True)))
            for sid, raw in zip(ids, rows, strict=True)
        ]

    def _prune(self, index: str, gone: Sequence[str]) -> None:
        pipe = self._client().pipeline(transaction=False)
        if gone:
            pipe.zrem(index, *gone)
        pipe.zremrangebyrank(index, 0, -USER_INDEX_CAP - 1)
        pipe.execute()


def _scored(flat: Sequence[Any]) -> list[tuple[float, str]]:
    """A script's flat list of id, score, id, score... as (score, id) pairs."""
    return [(float(flat[i + 1]), _text(flat[i]) or "") for i in range(0, len(flat), 2)]


def _run_id(conn: Any) -> str:
    """The `run_id` of the server process at the other end of `conn`."""
    conn.send_command("INFO", "server")
    info = _text(conn.read_response()) or ""
    for line in info.splitlines():
        if line.startswith("run_id:"):
            return line.split(":", 1)[1].strip()
    return ""


def _primary_names(client: RedisCluster) -> frozenset[str]:
    """The primaries in the client's slot map (no round trip)."""
    return frozenset(node.name for node in client.get_primaries())  # type: ignore[no-untyped-call]


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
        epoch=Epoch(int(fields["epoch"]), _text(fields.get("epoch_tag")) or ""),
        created_at=_text(fields["created_at"]) or "",
        started_at=_text(fields["started_at"]) or "",
        updated_at=_text(fields["updated_at"]) or "",
        done=done,
        cancel_requested=_text(fields.get("cancel")) == "1",
        states=parse_states(fields.get("states")),
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
        expires_at=_text(raw.get("expires_at")),
        params=ScanParams.from_dict(json.loads(raw["params"])) if raw.get("params") else None,
        states=parse_states(raw.get("states")),
    )
