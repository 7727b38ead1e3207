"""The shared series cache and the shared exchange throttle, on a real redis-server:
one fetch per series across workers, copies that expire with their candle, and a
Redis outage that costs time, never a series."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import redis

from oppscan.market.base import (
    Bars,
    FloatArray,
    Freshness,
    MarketDataError,
    SeriesKey,
    Throttle,
)
from oppscan.market.cache import CLAIM_TTL, SHARED_MARGIN, Obtained, SeriesCache
from oppscan.market.limits import SharedThrottle
from oppscan.market.throttle import LocalThrottle
from oppscan.processes import free_port
from oppscan.storage import Keys, MarketStore, open_store
from oppscan.storage.client import CircuitBreaker, connect

KEY = SeriesKey.bars("alpha", "BTC-USD", "1h")


class SlowMarket:
    """Bars after `delay` seconds, counting fetches (a worker's view of an exchange)."""

    name = "slow"

    def __init__(self, delay: float = 0.0, fails: bool = False, ttl: float = 120.0) -> None:
        self.delay = delay
        self.fails = fails
        self.ttl = ttl
        self.fetches = 0
        self.started = threading.Event()
        self._lock = threading.Lock()

    def symbols(self) -> Sequence[str]:
        return ("BTC-USD",)

    def venues(self) -> Sequence[str]:
        return ("alpha",)

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        with self._lock:
            self.fetches += 1
        self.started.set()
        time.sleep(self.delay)  # the exchange's answer time, not synchronisation
        if self.fails:
            raise MarketDataError("slow: 503 from the exchange")
        closes = np.linspace(100.0, 110.0, 50)
        stamps = np.arange(50, dtype=np.int64) * 3600
        return Bars(
            symbol, venue or "alpha", timeframe, stamps, closes, closes, closes, closes, closes
        )

    def funding_rates(self, symbol: str) -> FloatArray | None:
        return None

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        return Freshness("candle-1", self.ttl)


@pytest.fixture
def market_store(redis_url: str) -> Iterator[MarketStore]:
    store = open_store(redis_url, "oppscan:", 0.5)
    yield store.market()
    store.close()


def worker(market: SlowMarket, shared: MarketStore | None, timeout: float = 10.0) -> SeriesCache:
    """One worker's cache: its own memory, the deployment's Redis."""
    return SeriesCache(market, shared, 16 * 1024 * 1024, timeout)


def test_two_workers_asking_at_once_fetch_once(market_store: MarketStore) -> None:
    """The second worker waits for the first one's fetch and gets its copy."""
    first, second = SlowMarket(delay=0.5), SlowMarket(delay=0.5)
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(worker(first, market_store).get, KEY)
        assert first.started.wait(5)
        follower = pool.submit(worker(second, market_store).get, KEY)
        got = [leader.result(10), follower.result(10)]
    assert (1, 0) == (first.fetches, second.fetches)
    assert [Obtained.FETCHED, Obtained.SHARED] == [g.how for g in got]
    assert np.array_equal(got[0].series.close, got[1].series.close)  # type: ignore[union-attr]


def test_a_copy_in_redis_is_cached_for_later_workers(market_store: MarketStore) -> None:
    """A worker that comes later reads the stored copy: `cached`, no fetch."""
    first, later = SlowMarket(), SlowMarket()
    worker(first, market_store).get(KEY)
    got = worker(later, market_store).get(KEY)
    assert (Obtained.CACHED, 0) == (got.how, later.fetches)


def test_one_worker_asks_once_for_many_scans(market_store: MarketStore) -> None:
    """Eight threads of one worker asking at once: one fetch, seven shared or cached."""
    market = SlowMarket(delay=0.3)
    cache = worker(market, market_store)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: cache.get(KEY), range(8)))
    assert 1 == market.fetches
    assert 1 == sum(g.how is Obtained.FETCHED for g in got)


def test_a_copy_lives_until_its_candle_closes_plus_a_margin(
    market_store: MarketStore, redis_url: str
) -> None:
    """The stored copy's TTL is the series' freshness plus the margin; the lock is gone."""
    worker(SlowMarket(ttl=30.0), market_store).get(KEY)
    raw = redis.Redis.from_url(redis_url)
    keys = sorted(raw.keys("oppscan:series:*"))
    assert 1 == len(keys), keys
    pttl = raw.pttl(keys[0])
    assert (30.0 + SHARED_MARGIN) * 1000 >= pttl > (30.0 + SHARED_MARGIN - 5) * 1000
    assert b"candle-1" in keys[0]


def test_a_failed_fetch_lets_the_waiting_worker_try(market_store: MarketStore) -> None:
    """The fetching worker fails: the one waiting for it fetches for itself at once."""
    failing, healthy = SlowMarket(delay=0.3, fails=True), SlowMarket()
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(worker(failing, market_store).get, KEY)
        assert failing.started.wait(5)
        follower = pool.submit(worker(healthy, market_store).get, KEY)
        with pytest.raises(MarketDataError, match="503 from the exchange"):
            leader.result(10)
        assert Obtained.FETCHED == follower.result(10).how
    assert 1 == healthy.fetches


def dead_store() -> MarketStore:
    """A market store on a port where nothing listens."""
    client = connect(f"redis://127.0.0.1:{free_port()}/0", 0.2)
    return MarketStore(lambda: client, Keys("oppscan:"), CircuitBreaker())


def test_a_redis_outage_fetches_directly() -> None:
    """No Redis: every series is still had, from the source."""
    market = SlowMarket()
    got = worker(market, dead_store()).get(KEY)
    assert (Obtained.FETCHED, 1) == (got.how, market.fetches)


def test_the_shared_bucket_spaces_requests_at_the_rate(market_store: MarketStore) -> None:
    """A burst of 2 at 10 per second: two requests go now, the next waits ~100 ms,
    the one after ~200 ms: whichever worker takes them."""
    waits = [market_store.take("exchange-a", 1, 10.0, 2) for _ in range(4)]
    assert [0.0, 0.0] == waits[:2]
    assert 0.05 < waits[2] <= 0.1 < waits[3] <= 0.2


@pytest.fixture(params=["redis", "local"])
def bucket(request: pytest.FixtureRequest, market_store: MarketStore) -> Throttle:
    """The shared bucket in Redis and a worker's own: the same rules."""
    return market_store if request.param == "redis" else LocalThrottle()


def test_a_hold_off_stops_every_worker_then_lets_them_go_one_by_one(bucket: Throttle) -> None:
    """A 429's Retry-After: every take waits for it, and then for its turn at the rate,
    so the requests held back do not all go the moment the hold ends."""
    bucket.hold_off("exchange-b", 2.0)
    waits = [bucket.take("exchange-b", 1, 5.0, 5) for _ in range(5)]
    assert 1.5 < waits[0] <= 2.2
    gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    assert all(0.15 < gap <= 0.25 for gap in gaps), waits


def test_tokens_given_back_are_had_again(bucket: Throttle) -> None:
    """A take refused after all (nothing sent) gives its tokens back: no debt remains."""
    assert 0.0 == bucket.take("exchange-d", 5, 5.0, 5)
    assert bucket.take("exchange-d", 5, 5.0, 5) > 0.5
    bucket.take("exchange-d", -5, 5.0, 5)
    assert 0.0 < bucket.take("exchange-d", 1, 5.0, 5) <= 0.25


def test_without_redis_each_worker_takes_its_share_of_the_rate() -> None:
    """The fallback bucket of one of 4 workers refills at a quarter of the rate."""
    throttle = SharedThrottle(dead_store(), LocalThrottle(), workers=4)
    waits = [throttle.take("exchange-c", 1, 40.0, 4) for _ in range(3)]
    assert [0.0] == waits[:1]
    assert 0.05 < waits[1] <= 0.1  # 10 per second for this worker


def test_many_workers_racing_on_many_series_fetch_each_once(market_store: MarketStore) -> None:
    """Eight workers each asking for the same 30 series at once: 30 fetches in all.

    A look for a stored copy and the claim to fetch are one step in Redis: a copy
    stored between the two can never be fetched again by a worker that looked first.
    """
    markets = [SlowMarket(delay=0.01) for _ in range(8)]
    caches = [worker(market, market_store) for market in markets]
    keys = [SeriesKey.bars("alpha", f"SYM{i}", "1h") for i in range(30)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda job: job[0].get(job[1]), [(c, k) for k in keys for c in caches]))
    assert 30 == sum(market.fetches for market in markets)


def test_a_claim_left_by_a_dead_worker_lapses_within_seconds(
    market_store: MarketStore, redis_url: str
) -> None:
    """A worker killed mid-fetch leaves its claim, which nobody extends: a waiting
    worker fetches for itself once it lapses, not after the whole fetch timeout."""
    cache = worker(SlowMarket(), market_store, timeout=60.0)
    name = cache._name(KEY, "candle-1")
    redis.Redis.from_url(redis_url).set(Keys("oppscan:").series_fetch(name), "dead", px=500)
    started = time.monotonic()
    got = cache.get(KEY)
    assert Obtained.FETCHED == got.how
    assert time.monotonic() - started < 5.0


def test_a_live_fetcher_keeps_its_claim_past_the_claim_ttl(
    market_store: MarketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fetch slower than the claim's TTL is still the only one: its worker extends it."""
    import oppscan.market.cache as cache_module

    monkeypatch.setattr(cache_module, "CLAIM_TTL", 0.3)
    monkeypatch.setattr(cache_module, "CLAIM_RENEWAL", 0.05)
    slow, other = SlowMarket(delay=1.0), SlowMarket()
    first, second = worker(slow, market_store), worker(other, market_store)
    try:
        with ThreadPoolExecutor(2) as pool:
            leader = pool.submit(first.get, KEY)
            assert slow.started.wait(5)
            follower = pool.submit(second.get, KEY)
            assert Obtained.FETCHED == leader.result(10).how
            assert Obtained.SHARED == follower.result(10).how
    finally:
        first.close()
        second.close()
    assert (1, 0) == (slow.fetches, other.fetches)


def test_closing_a_worker_gives_up_its_claims(market_store: MarketStore, redis_url: str) -> None:
    """A worker that stops mid-fetch ends its claims at once: others need not wait."""
    slow = SlowMarket(delay=1.0)
    cache = worker(slow, market_store)
    raw = redis.Redis.from_url(redis_url)
    with ThreadPoolExecutor(1) as pool:
        fetching = pool.submit(cache.get, KEY)
        assert slow.started.wait(5)
        claims = raw.keys("oppscan:series:*:fetching")
        assert 1 == len(claims)
        assert 0 < raw.pttl(claims[0]) <= CLAIM_TTL * 1000  # lapses soon if nobody extends it
        cache.close()
        assert [] == raw.keys("oppscan:series:*:fetching")
        fetching.result(10)


def test_a_source_with_other_options_shares_no_copies(market_store: MarketStore) -> None:
    """The same exchange id with other options (a testnet, say) is another source: its
    workers fetch for themselves rather than read the other's copies."""
    mainnet, testnet = SlowMarket(), SlowMarket()
    SeriesCache(mainnet, market_store, 1 << 20, 10.0, variant="aaaa").get(KEY)
    got = SeriesCache(testnet, market_store, 1 << 20, 10.0, variant="bbbb").get(KEY)
    assert (Obtained.FETCHED, 1, 1) == (got.how, mainnet.fetches, testnet.fetches)
