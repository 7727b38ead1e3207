"""A scan's fetch plan: the distinct series of its strategies, each fetched once, and
each strategy told as soon as its own are in."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest

from oppscan.actors.feed import Feeds
from oppscan.actors.strategy_run import ThreadStrategyPool
from oppscan.market import SyntheticMarket
from oppscan.market.base import Bars, SeriesKey
from oppscan.market.cache import SeriesCache
from oppscan.market.plan import FetchPool, ScanFetch, fetch_order
from oppscan.model import ScanParams
from oppscan.strategies import BUILTIN_STRATEGIES, Universe, series_needed
from tests.fakes import CountingMarket, FakeStrategy

UNIVERSE = Universe(("BTC-USD", "ETH-USD"), "1h", ("alpha", "beta", "gamma"))


@pytest.fixture
def fetchers() -> Iterator[FetchPool]:
    pool = FetchPool(4)
    yield pool
    pool.close()


def test_the_fourteen_builtins_need_bars_on_every_venue_and_funding() -> None:
    """All 14 built-ins over 2 symbols on 3 venues need 8 distinct series: bars on each
    venue (cross-venue arbitrage) and the funding of each symbol."""
    needed = set().union(*(series_needed(s, UNIVERSE) for s in BUILTIN_STRATEGIES))
    assert 8 == len(needed)
    assert {SeriesKey.funding("alpha", "BTC-USD"), SeriesKey.funding("alpha", "ETH-USD")} == {
        k for k in needed if k.kind == "funding"
    }


def test_a_strategy_that_declares_nothing_gets_the_primary_bars() -> None:
    """A plugin without `needs` is planned for the primary bars of each symbol."""

    class Plain:
        name, description = "plain", "declares nothing"

        def run(self, ctx: object) -> list[object]:
            return []

    assert set(UNIVERSE.primary_bars()) == series_needed(Plain(), UNIVERSE)  # type: ignore[arg-type]


def test_cross_venue_arbitrage_needs_nothing_on_one_venue() -> None:
    """On a one-venue market it reads nothing (and skips when it runs)."""
    cross = next(s for s in BUILTIN_STRATEGIES if s.name == "cross_venue_arbitrage")
    assert frozenset() == series_needed(cross, Universe(("BTC-USD",), "1h", ("csv",)))


def test_each_series_is_fetched_once_and_counted(fetchers: FetchPool) -> None:
    """Repeated keys cost one fetch each; the summary counts them."""
    market = CountingMarket()
    cache = SeriesCache(market, None, 1 << 24, 10.0)
    keys = [SeriesKey.bars("a", "SYM0", "1h")] * 3 + [SeriesKey.bars("b", "SYM0", "1h")]
    fetch = ScanFetch(cache, fetchers, keys)
    done = threading.Event()
    fetch.when_ready(keys, done.set)
    assert done.wait(5)
    assert 2 == len(market.fetches)
    assert {"source": "counting", "series": 2, "fetched": 2, "cached": 0, "shared": 0,
            "failed": 0} == fetch.summary()  # fmt: skip
    again = ScanFetch(cache, fetchers, keys)
    ready = threading.Event()
    again.when_ready(keys, ready.set)
    assert ready.wait(5)
    assert (2, 2) == (again.summary()["cached"], len(market.fetches))


def test_when_ready_with_nothing_to_wait_for_calls_at_once(fetchers: FetchPool) -> None:
    """A strategy that reads nothing starts at once."""
    fetch = ScanFetch(SeriesCache(CountingMarket(), None, 1 << 20, 1.0), fetchers, [])
    called = []
    fetch.when_ready([], lambda: called.append(True))
    assert [True] == called


def test_the_market_a_strategy_reads_serves_the_fetched_series(fetchers: FetchPool) -> None:
    """Bars and funding come from the plan; funding "not offered" reads as None."""
    source = SyntheticMarket()
    cache = SeriesCache(source, None, 1 << 26, 10.0)
    keys = [SeriesKey.bars("alpha", "BTC-USD", "1h"), SeriesKey.funding("alpha", "BTC-USD")]
    fetch = ScanFetch(cache, fetchers, keys)
    ready = threading.Event()
    fetch.when_ready(keys, ready.set)
    assert ready.wait(10)
    market = fetch.market(keys, fallback=None)
    assert source.bars("BTC-USD", "1h").close is market.bars("BTC-USD", "1h").close
    assert market.funding_rates("BTC-USD") is not None
    with pytest.raises(Exception, match="not among the series the strategy declared"):
        market.bars("ETH-USD", "1h")


def test_fake_strategies_read_nothing() -> None:
    """The unit fakes declare no series, so their scans fetch nothing."""
    assert frozenset() == series_needed(FakeStrategy("x"), UNIVERSE)


def test_the_fetch_order_puts_primary_bars_first_and_funding_last() -> None:
    """Groups in order (primary bars, other venues' bars, funding), each shuffled: two
    workers starting the same universe begin with different series."""
    keys = [
        SeriesKey.bars(venue, f"S{i}", "1h") for venue in ("alpha", "beta") for i in range(20)
    ] + [SeriesKey.funding("alpha", f"S{i}") for i in range(20)]
    first = fetch_order(keys, "alpha", random.Random(1))
    second = fetch_order(keys, "alpha", random.Random(2))
    assert sorted(keys) == sorted(first)
    assert ["alpha"] * 20 + ["beta"] * 20 == [k.venue for k in first[:40]]
    assert {"bars"} == {k.kind for k in first[:40]}
    assert {"funding"} == {k.kind for k in first[40:]}
    assert first[:5] != second[:5]


class GatedMarket(CountingMarket):
    """Bars that wait for `gate`: fetches stay in flight while the test looks."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        self.gate.wait(10)
        return super().bars(symbol, timeframe, venue)


def test_cancel_drops_the_fetches_not_started() -> None:
    """A scan that ends drops its queued fetches: they are never sent, and count failed."""
    market = GatedMarket()
    one = FetchPool(1)
    try:
        keys = [SeriesKey.bars("a", f"SYM{i}", "1h") for i in range(4)]
        fetch = ScanFetch(SeriesCache(market, None, 1 << 20, 10.0), one, keys)
        fetch.cancel()
        market.gate.set()
        done = threading.Event()
        fetch.when_ready(keys, done.set)
        assert done.wait(5)
        assert len(market.fetches) <= 1  # the one already running when the scan ended
        assert 3 <= fetch.summary()["failed"]
    finally:
        one.close()


def test_a_plugin_whose_needs_raises_is_planned_for_the_primary_bars(
    fetchers: FetchPool,
) -> None:
    """A bug in a plugin's `needs` costs it its declaration, not the scan."""

    class Broken(FakeStrategy):
        def needs(self, universe: Universe) -> list[SeriesKey]:
            raise KeyError("oops")

    market = CountingMarket()
    shared = Feeds(
        ThreadStrategyPool(1, {}), SeriesCache(market, None, 1 << 20, 10.0), fetchers, {}
    )
    feed = Feeds.for_scan(
        replace(shared, strategies={"broken": Broken("broken")}),
        "scan_1",
        ScanParams(("broken",), ("SYM0",), "1h"),
        ["broken"],
    )
    assert {"source": "counting", "series": 1} == {
        k: v for k, v in feed.market_summary().items() if k in ("source", "series")
    }
    shared.pool.shutdown()
