"""Which Redis error replies are outages (503, deferred writes) and which stay bugs."""

from __future__ import annotations

import threading

import pytest
import redis
import structlog
import structlog.testing

from oppscan.storage import CircuitBreaker, StoreUnavailable
from oppscan.storage.client import Connector, RefusalParser

SCRIPT = "ERR Error running script (call to f_0afd): @user_script:8: @user_script: 8: "


def raise_reply(reply: str) -> None:
    """What a redis-py call does with `reply`, as oppscan's connections parse it."""
    raise RefusalParser.parse_error(reply)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("READONLY You can't write against a read only replica.", "READONLY"),
        ("OOM command not allowed when used memory > 'maxmemory'.", "OOM"),
        ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable", "MISCONF"),
        ("NOREPLICAS Not enough good replicas to write.", "NOREPLICAS"),
        ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is 'no'.", "MASTERDOWN"),
        ("BUSY Redis is busy running a script. You can only call SCRIPT KILL", "BUSY"),
        ("TRYAGAIN Multiple keys request during rehashing of slot", "TRYAGAIN"),
        ("CLUSTERDOWN The cluster is down", "CLUSTERDOWN"),
        ("LOADING Redis is loading the dataset in memory", "BusyLoadingError"),
        (SCRIPT + "-READONLY You can't write against a read only replica.", "READONLY"),
        (SCRIPT + "-OOM command not allowed when used memory > 'maxmemory'.", "OOM"),
        (SCRIPT + "-NOREPLICAS Not enough good replicas to write.", "NOREPLICAS"),
    ],
)
def test_a_refusal_is_an_outage(reply: str, reason: str) -> None:
    """A reply saying the server cannot serve now opens the breaker as a dropped connection does."""
    breaker = CircuitBreaker()
    with pytest.raises(StoreUnavailable) as unavailable:
        breaker.call(lambda: raise_reply(reply))
    assert reason == unavailable.value.reason
    assert breaker.is_open


@pytest.mark.parametrize(
    "reply",
    [
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR wrong number of arguments for 'hset' command",
        "BUSYKEY Target key name already exists.",
        "NOPERM this user has no permissions to run the 'eval' command",
        SCRIPT + "WRONGTYPE Operation against a key holding the wrong kind of value",
        SCRIPT + "Unknown Redis command called from Lua script",
        "ERR user_script:1: Script attempted to access nonexistent global variable 'READONLY' ",
    ],
)
def test_any_other_error_reply_stays_a_bug(reply: str) -> None:
    """A wrong call or a script's own error raises ResponseError and leaves the breaker closed."""
    breaker = CircuitBreaker()
    with pytest.raises(redis.ResponseError):
        breaker.call(lambda: raise_reply(reply))
    assert not breaker.is_open


def test_an_outage_is_two_log_events_whatever_the_calls_in_it() -> None:
    """The breaker logs `store_down` when it opens and `store_reconnected` when it closes,
    with how long it was down and the requests refused meanwhile; the calls refused
    while it is open carry the same outage, and log nothing of their own."""
    now = [100.0]
    breaker = CircuitBreaker("scans", clock=lambda: now[0])
    with structlog.testing.capture_logs() as logged:
        refused = []
        for probe in range(3):
            now[0] += 5.0 if probe else 0.0  # past the back-off: a probe, which fails again
            with pytest.raises(StoreUnavailable) as unavailable:
                breaker.call(lambda: raise_reply("READONLY You can't write against a replica."))
            refused.append(unavailable.value)
        with pytest.raises(StoreUnavailable) as fast:
            breaker.call(lambda: 1)  # inside the back-off: refused without a call
        for answer in [*refused, fast.value]:
            assert answer.outage is refused[0].outage
            answer.outage.refused_a_request()  # as the HTTP layer does for its 503s
        now[0] += 5.0
        assert 1 == breaker.call(lambda: 1)
    assert [
        ("store_down", "READONLY"),
        ("store_reconnected", "READONLY"),
    ] == [(e["event"], e["failure_reason"]) for e in logged]
    assert (15.0, 4) == (logged[1]["down_s"], logged[1]["requests_refused"])
    assert not breaker.is_open


def unreachable_cluster() -> None:
    """What redis-py's cluster client raises when none of the nodes it asks answers."""
    try:
        raise redis.ConnectionError("Connection refused")
    except redis.ConnectionError as refused:
        raise redis.RedisClusterException("Redis Cluster cannot be connected.") from refused


def refused_while_learning_slots() -> None:
    """redis-py asking a node that refuses (BUSY) for the slots: it wraps the refusal
    twice, the second time without naming it as the cause."""
    try:
        try:
            raise_reply("BUSY Redis is busy running a script.")
        except redis.ResponseError:
            raise redis.RedisClusterException("Cluster mode is not enabled on this node") from None
    except redis.RedisClusterException as wrapped:
        raise redis.RedisClusterException("Redis Cluster cannot be connected.") from wrapped


def cross_slot_script() -> None:
    """What redis-py's cluster client raises for a script whose keys span slots: a bug."""
    raise redis.RedisClusterException("EVALSHA - all keys must map to the same key slot")


def test_a_cluster_error_caused_by_an_outage_is_an_outage() -> None:
    breaker = CircuitBreaker()
    with pytest.raises(StoreUnavailable):
        breaker.call(unreachable_cluster)
    assert breaker.is_open


def test_a_refusal_redis_py_wrapped_twice_is_an_outage() -> None:
    breaker = CircuitBreaker()
    with pytest.raises(StoreUnavailable):
        breaker.call(refused_while_learning_slots)
    assert breaker.is_open


def test_a_cluster_error_of_our_own_making_stays_a_bug() -> None:
    """A call across slots is a bug to show, not a 503 that hides it."""
    breaker = CircuitBreaker()
    with pytest.raises(redis.RedisClusterException, match="same key slot"):
        breaker.call(cross_slot_script)
    assert not breaker.is_open


def test_one_thread_at_a_time_makes_the_cluster_client() -> None:
    """While one thread waits on a silent cluster, the others fail at once as an
    outage (they do not queue up behind it), and the client is made once."""
    entered, release = threading.Event(), threading.Event()
    made: list[object] = []

    def make(_greet: object) -> redis.Redis:
        entered.set()
        release.wait(5)
        made.append(object())
        return redis.Redis()

    connector = Connector(make, cluster=True)
    first = threading.Thread(target=connector)
    first.start()
    assert entered.wait(5)
    breaker = CircuitBreaker()
    with pytest.raises(StoreUnavailable):
        breaker.call(connector)
    assert not breaker.is_open  # nothing is known to be down
    release.set()
    first.join(5)
    assert connector.made is not None
    assert connector() is connector.made
    assert 1 == len(made)
