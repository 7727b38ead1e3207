"""The Redis connection: short timeouts, no hidden retries, a circuit breaker.

A request never waits on redis-py's retry loop: one attempt with a short
timeout, and while the store is known to be down every call fails at once
(`StoreUnavailable`) until a probe after the back-off succeeds.

An outage is a dropped or silent connection, and also an error reply by which
a server that answers says it cannot serve now (`REFUSALS`: a replica after a
failover, out of memory, a failed save, a script hogging it...). The
connection's parser turns those replies into `StoreRefused`, so `is_outage`
counts them, for the breaker and the probe alike. Any other error reply (a
wrong type, a bug in a script) is a bug and stays a `ResponseError`.

`redis+sentinel://[user:pass@]host:port[,host:port…]/MASTER[/DB]` names a
Sentinel deployment: each new connection asks the sentinels where the master
is, and a connection that meets a `READONLY` (its server was demoted) or
loses its server is dropped, so the next one goes to the master of the day.

`redis+cluster://[user:pass@]host:port[,host:port…]` names a Redis Cluster by a
few of its nodes (redis-py's RedisCluster, with the same single attempt: a node
that fails makes the client learn the slots anew, and the call answers 503).
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import DefaultParser
from redis.exceptions import (
    ClusterError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from oppscan.logs import get_logger
from oppscan.metrics import REDIS_ERRORS

T = TypeVar("T")
log = get_logger("oppscan.store")

# Error codes of replies that mean "not now", not "wrong call". LOADING is not
# here: redis-py already raises BusyLoadingError, a ConnectionError, for it.
REFUSALS = frozenset(
    {
        "READONLY",  # a replica: the master failed over, or was demoted
        "OOM",  # maxmemory reached under noeviction
        "MISCONF",  # the last save failed and the server stops writes
        "NOREPLICAS",  # fewer good replicas than min-replicas-to-write
        "MASTERDOWN",  # a replica cut off from its master, serving no stale data
        "BUSY",  # a script or function runs past its time limit
        "TRYAGAIN",  # a cluster slot is migrating
        "CLUSTERDOWN",  # a cluster slot has no node
    }
)
# Redis 6 wraps a refusal met by a script's redis.call: "Error running script
# (call to f_…): @user_script:8: @user_script: 8: -READONLY You can't…".
# Redis 7 puts the code first, as for any command.
_SCRIPT_REFUSAL = re.compile(r"@user_script: ?\d+: -([A-Z]+) ")


class StoreRefused(ResponseError):
    """An error reply from a server that cannot serve now (one of `REFUSALS`)."""

    def __init__(self, code: str, reply: str) -> None:
        super().__init__(reply)
        self.code = code


def refusal_code(reply: str) -> str | None:
    """The `REFUSALS` code an error reply carries, directly or from inside a script."""
    code = reply.split(" ", 1)[0]
    if code not in REFUSALS:
        inner = _SCRIPT_REFUSAL.findall(reply) if "Error running script" in reply else []
        code = inner[-1] if inner else ""
    return code if code in REFUSALS else None


class RefusalParser(DefaultParser):  # type: ignore[misc,valid-type]  # redis-py types it as a union
    """redis-py's reply parser, with refusals raised as `StoreRefused`."""

    @classmethod
    def parse_error(cls, response: str) -> Exception:
        code = refusal_code(response)
        if code is None:
            parsed: Exception = super().parse_error(response)
            return parsed
        return StoreRefused(code, response)


OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    StoreRefused,
    SlotNotCoveredError,  # a cluster's slot map has a hole (a master failing over)
    ClusterError,  # a cluster redirected a call too often (slots moving)
    OSError,
)


def is_outage(exc: BaseException) -> bool:
    """The store cannot serve now, which is no bug: one of `OUTAGE_ERRORS`, or a
    cluster client's error that one led to (none of the nodes it asked answered,
    or each refused: redis-py wraps such errors, a few levels deep). Other cluster
    client errors (a call across slots, a server not in cluster mode) are bugs or
    a wrong setting, and stay errors."""
    if isinstance(exc, OUTAGE_ERRORS):
        return True
    if not isinstance(exc, RedisClusterException):
        return False
    cause = exc.__cause__ or exc.__context__
    for _ in range(4):
        if cause is None or isinstance(cause, OUTAGE_ERRORS):
            break
        cause = cause.__cause__ or cause.__context__
    return isinstance(cause, OUTAGE_ERRORS)


Client = redis.Redis | RedisCluster
Greet = Callable[[Any], None]  # given a new connection, talks to its server first


class Outage:
    """One stretch of time a store was down: from the call that failed first until
    the breaker closed again, and how many requests were answered 503 meanwhile."""

    def __init__(self, store: str, reason: str, clock: Callable[[], float]) -> None:
        self.store = store
        self.reason = reason
        self.started = clock()
        self.requests_refused = 0  # a count of the HTTP layer's 503s (a lost one is harmless)

    def refused_a_request(self) -> None:
        self.requests_refused += 1


class StoreUnavailable(Exception):
    """Redis cannot be reached now; the answer is 503, never `not_found`."""

    def __init__(self, reason: str, retry_after: float = 1.0, outage: Outage | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.outage = outage  # the breaker's, for the HTTP layer to count its 503s


SENTINEL_SCHEME = "redis+sentinel"
HEALTH_CHECK_S = 10  # a connection idle this long is checked (PING) before use
CLUSTER_SCHEME = "redis+cluster"


@dataclass(frozen=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names: where the sentinels listen, the master's
    name, its database, and the credentials of the master (and of the sentinels,
    `?sentinel_password=`, when they have their own)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    @classmethod
    def parse(cls, url: str) -> SentinelTarget:
        """Raises ValueError naming the part that is wrong (never the password)."""
        parts = _split(url, SENTINEL_SCHEME)
        sentinels = _hosts(parts, "sentinel")
        path = [p for p in parts.path.split("/") if p]
        if not path or len(path) > 2:
            raise ValueError("the path is not /MASTER or /MASTER/DB")
        if len(path) == 2 and not path[1].isdigit():
            raise ValueError(f"database {path[1]!r} is not a number")
        query = parse_qs(parts.query)
        unknown = set(query) - {"sentinel_password"}
        if unknown:
            raise ValueError(f"unknown option {sorted(unknown)[0]!r}")
        username, password = _credentials(parts)
        return cls(
            sentinels=sentinels,
            master=unquote(path[0]),
            db=int(path[1]) if len(path) == 2 else 0,
            username=username,
            password=password,
            sentinel_password=query.get("sentinel_password", [None])[0],
        )

    def address(self) -> str:
        nodes = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"sentinel {nodes} master {self.master}"


@dataclass(frozen=True)
class ClusterTarget:
    """What a `redis+cluster://` URL names: a few nodes to learn the cluster from,
    and the credentials of its nodes."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> ClusterTarget:
        """Raises ValueError naming the part that is wrong (never the password)."""
        parts = _split(url, CLUSTER_SCHEME)
        nodes = _hosts(parts, "cluster node")
        if parts.path.strip("/") or parts.query:
            raise ValueError("a cluster URL has no database and no options")
        return cls(nodes, *_credentials(parts))

    def address(self) -> str:
        return "cluster " + ",".join(f"{host}:{port}" for host, port in self.nodes)


def _split(url: str, scheme: str) -> SplitResult:
    parts = urlsplit(url)
    if parts.scheme != scheme:
        raise ValueError(f"scheme is not {scheme}")
    return parts


def _hosts(parts: SplitResult, what: str) -> tuple[tuple[str, int], ...]:
    """The URL's `host:port[,host:port…]`, at least one."""
    hosts = parts.netloc.rpartition("@")[2]
    found = tuple(_host_port(node, what) for node in hosts.split(",") if node)
    if not found:
        raise ValueError(f"no {what} host:port")
    return found


def _credentials(parts: SplitResult) -> tuple[str | None, str | None]:
    """The URL's user name and password, decoded; None where absent."""
    credentials = parts.netloc.rpartition("@")[0]
    user, _, password = credentials.partition(":") if credentials else ("", "", "")
    return unquote(user) or None, unquote(password) or None


def _host_port(node: str, what: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{what} {node!r} is not host:port")
    return host.strip("[]"), int(port)


class RefusingConnection(redis.Connection):
    """A cluster node's connection: its parser raises refusals as `StoreRefused`, and
    it checks an idle connection before use as `connect` asks (a cluster's client
    passes its nodes neither option). So a `TRYAGAIN` or `CLUSTERDOWN` fails the call
    at once (503) rather than wait in redis-py's own retries; the steward's probe
    learns the slots anew."""

    def __init__(self, **kwargs: Any) -> None:
        options = {"health_check_interval": HEALTH_CHECK_S, **kwargs, "parser_class": RefusalParser}
        super().__init__(**options)  # type: ignore[no-untyped-call]  # untyped upstream


class DemotedMasterConnection(SentinelManagedConnection):
    """A connection to the master Sentinel names, dropped on a `READONLY` (its server
    was demoted): the next connection asks the sentinels again."""

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except StoreRefused as refused:
            if refused.code == "READONLY":
                self.disconnect()  # type: ignore[no-untyped-call]  # untyped upstream
            raise


def connect(url: str, timeout: float, greet: Greet | None = None) -> Client:
    """A client that tries once: `timeout` for each reply, half of it to connect.
    `greet`: the first round trips of each new connection of a cluster's client.

    A cluster's client learns the slots at once: it raises `RedisClusterException`
    when none of the nodes named answers (`Connector` makes it when one does).
    """
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout / 2,
        "health_check_interval": HEALTH_CHECK_S,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": 64,
    }
    if is_cluster(url):
        return _cluster(ClusterTarget.parse(url), {**options, "redis_connect_func": greet})
    options.update(parser_class=RefusalParser, retry_on_timeout=False)
    if not url.startswith(SENTINEL_SCHEME + "://"):
        return redis.Redis.from_url(url, **options)
    target = SentinelTarget.parse(url)
    sentinels = Sentinel(  # type: ignore[no-untyped-call]  # untyped upstream
        list(target.sentinels),
        sentinel_kwargs={
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout / 2,
            "password": target.sentinel_password,
        },
    )
    client: redis.Redis = sentinels.master_for(  # type: ignore[no-untyped-call]  # untyped upstream
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        connection_class=DemotedMasterConnection,
        **options,
    )
    return client


def _cluster(target: ClusterTarget, options: dict[str, Any]) -> RedisCluster:
    (host, port), *others = target.nodes
    client = _learn_slots(
        lambda: RedisCluster(
            # Given a URL, the client builds each node's pool from the options, so the
            # nodes' connections take a connection class of ours.
            url=f"redis://{_bracketed(host)}:{port}",
            startup_nodes=[ClusterNode(h, p) for h, p in others],  # type: ignore[no-untyped-call]
            username=target.username,
            password=target.password,
            require_full_coverage=False,  # the slots of a master failing over answer 503
            connection_class=RefusingConnection,
            **options,
        )
    )
    # redis-py learns the slots again by itself (after a lost node, a MOVED): the
    # same cluster being formed is an outage there too.
    manager = client.nodes_manager
    initialize = manager.initialize
    manager.initialize = lambda *a, **kw: _learn_slots(lambda: initialize(*a, **kw))  # type: ignore[method-assign]
    return client


def _learn_slots(fn: Callable[[], T]) -> T:
    """`fn` asks a cluster which node holds which slot. A cluster whose nodes answer
    but that assigned no slot yet (being formed) is an outage too; redis-py 8.1
    raises IndexError for it."""
    try:
        return fn()
    except IndexError as exc:
        raise SlotNotCoveredError("the cluster has no slot assigned yet") from exc


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_cluster(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEME + "://")


class Connector:
    """The store's client, made at the first call that needs it.

    A cluster's client learns the slots as it is made, which needs a node that
    answers; until one does, making it raises an outage (`RedisClusterException`)
    inside the caller's circuit breaker, and a later call or the steward's probe
    tries again. So a worker starts, and says it is not ready, whether or not its
    cluster answers yet, as it does with one Redis.
    """

    def __init__(self, make: Callable[[Greet | None], Client], cluster: bool) -> None:
        self.cluster = cluster
        self.greet: Greet | None = None  # run on each new connection of a cluster's client
        self._make = make
        self._client: Client | None = None
        self._lock = threading.Lock()

    @classmethod
    def to(cls, url: str, timeout: float) -> Connector:
        return cls(lambda greet: connect(url, timeout, greet), is_cluster(url))

    def __call__(self) -> Client:
        client = self._client
        if client is None:
            # One thread at a time tries (a silent node costs it the connect timeout);
            # the others meanwhile answer 503 at once, without tripping a breaker:
            # nothing is known to be down yet.
            if not self._lock.acquire(blocking=False):
                raise StoreUnavailable("cluster_connecting")
            try:
                if self._client is None:
                    self._client = self._make(self.greet)
                client = self._client
            finally:
                self._lock.release()
        return client

    @property
    def made(self) -> Client | None:
        """The client, if it was made (no attempt to make it)."""
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def redis_address(url: str) -> str:
    """Where `url` points, for logs: host:port, the socket path, the sentinels and
    master's name, or the cluster's nodes; never a password.

    Raises ValueError for a URL redis-py cannot use (scheme, port, option).
    """
    if url.startswith(SENTINEL_SCHEME + ":"):
        return SentinelTarget.parse(url).address()
    if is_cluster(url):
        return ClusterTarget.parse(url).address()
    pool = redis.ConnectionPool.from_url(url)
    try:
        pool.make_connection()  # built, not connected: an unknown option fails here
    except TypeError as exc:
        raise ValueError(f"unknown option ({exc})") from None
    options = pool.connection_kwargs
    if "path" in options:
        return str(options["path"])
    return f"{options.get('host', 'localhost')}:{options.get('port', 6379)}"


class ThreadConnections:
    """One redis-py connection per thread, for the request path's single reads.

    Checking a connection out of the pool and back in, and the client's retry
    and observability wrappers, cost more CPU than the round trip itself
    (`benchmarks/README.md`). Each request thread keeps its own connection,
    made with the pool's settings (timeouts, TLS, credentials, health checks);
    any error drops it. A kept connection that the server closed meanwhile
    (a restart, a failover, its idle timeout) is replaced at once and the read
    sent again, once: the check the pool makes before lending a connection.
    Only for reads, which are safe to send twice.
    """

    def __init__(
        self, pool: redis.ConnectionPool, greet: Callable[[Any], None] = lambda _conn: None
    ) -> None:
        self._pool = pool
        self._greet = greet  # the first round trip of every new connection
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()

    def execute(self, *args: str | bytes) -> Any:
        """One read and its reply, unparsed (lists and bytes, as Redis sent them)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or not conn.is_connected:
            conn = conn or self._new()
            self._connect(conn)
            return _round_trip(conn, args)
        try:
            return _round_trip(conn, args)
        except RedisConnectionError:
            self._connect(conn)  # on a new socket: a dead Redis refuses at once
            return _round_trip(conn, args)

    def _connect(self, conn: Any) -> None:
        try:
            conn.connect()  # its class's own: a Sentinel-managed one asks where the master is
            self._greet(conn)
        except BaseException:
            conn.disconnect()
            raise

    def _new(self) -> Any:
        conn = self._local.conn = self._pool.connection_class(**self._pool.connection_kwargs)
        with self._lock:
            self._open.add(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            open_now = list(self._open)
        for conn in open_now:
            conn.disconnect()


class ClusterReads:
    """The request path's single reads on a cluster: redis-py sends each to the node
    that holds its key's slot, on that node's pooled connections."""

    def __init__(self, client: Callable[[], Client]) -> None:
        self._client = client

    def execute(self, *args: str | bytes) -> Any:
        return self._client().execute_command(*args)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        pass  # the client's pools are closed with the client


def _round_trip(conn: Any, args: tuple[str | bytes, ...]) -> Any:
    try:
        conn.send_command(*args)
        return conn.read_response()
    except BaseException:
        conn.disconnect()
        raise


@dataclass
class CircuitBreaker:
    """Opens on an outage; after `backoff` one caller probes, the rest fail fast.

    An outage is logged twice, whatever the traffic: `store_down` when the breaker
    opens (with the first failure), `store_reconnected` when it closes (with how
    long it lasted and how many requests were answered 503).
    """

    store: str = "scans"  # which store, in its log events
    min_backoff: float = 0.05
    max_backoff: float = 2.0
    clock: Callable[[], float] = time.monotonic
    _open_until: float = 0.0
    _backoff: float = 0.0
    _outage: Outage | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, fn: Callable[[], T]) -> T:
        self._admit()
        try:
            result = fn()
        except Exception as exc:
            if not is_outage(exc):
                raise
            kind = exc.code if isinstance(exc, StoreRefused) else type(exc).__name__
            REDIS_ERRORS.labels(kind).inc()
            outage = self._trip(kind, exc)
            raise StoreUnavailable(kind, self.retry_after, outage) from exc
        self._reset()
        return result

    @property
    def is_open(self) -> bool:
        return self._backoff > 0

    @property
    def retry_after(self) -> float:
        return max(1.0, self._backoff)

    def _admit(self) -> None:
        with self._lock:
            now = self.clock()
            if now < self._open_until:
                REDIS_ERRORS.labels("circuit_open").inc()
                raise StoreUnavailable("circuit_open", self.retry_after, self._outage)
            if self._backoff:
                # Let exactly this caller probe; others fail fast meanwhile.
                self._open_until = now + self._backoff

    def _trip(self, kind: str, exc: BaseException) -> Outage:
        with self._lock:
            self._backoff = min(self.max_backoff, max(self.min_backoff, self._backoff * 2))
            self._open_until = self.clock() + self._backoff
            outage, opened = self._outage, self._outage is None
            if outage is None:
                outage = self._outage = Outage(self.store, kind, self.clock)
        if opened:
            log.warning("store_down", store=self.store, failure_reason=kind, detail=str(exc))
        return outage

    def reset(self) -> None:
        """Close the breaker (a probe found the store answering again)."""
        with self._lock:
            self._backoff = 0.0
            self._open_until = 0.0
            outage, self._outage = self._outage, None
        if outage is not None:
            log.info(
                "store_reconnected",
                store=self.store,
                failure_reason=outage.reason,
                down_s=round(self.clock() - outage.started, 3),
                requests_refused=outage.requests_refused,
            )

    def _reset(self) -> None:
        if self._backoff:
            self.reset()
