"""The synthetic market: deterministic, broad, and shaped like a real one."""

from __future__ import annotations

import time

import numpy as np
import pytest

from oppscan.market import TIMEFRAMES, MarketDataError, SyntheticMarket
from oppscan.market.synthetic import END_TIME, clear_caches


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return SyntheticMarket()


def test_the_default_universe_is_broad_and_sorted(market: SyntheticMarket) -> None:
    """At least 50 symbols, sorted, crypto names first among them."""
    symbols = list(market.symbols())
    assert 60 == len(symbols)
    assert sorted(symbols) == symbols
    assert {"BTC-USD", "ETH-USD", "SYN01-USD"} <= set(symbols)


def test_there_are_three_venues_primary_first(market: SyntheticMarket) -> None:
    """Three venues; bars default to the first."""
    assert ("alpha", "beta", "gamma") == tuple(market.venues())
    assert "alpha" == market.bars("BTC-USD", "1h").venue


def test_series_are_deterministic_across_instances_and_caches() -> None:
    """Two instances, and a rebuild after clearing every cache, give the same numbers."""
    first = SyntheticMarket().bars("ETH-USD", "4h", "beta")
    clear_caches()
    again = SyntheticMarket().bars("ETH-USD", "4h", "beta")
    assert first is not again
    for field in ("time", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(first, field), getattr(again, field))


def test_the_seed_changes_the_series() -> None:
    """Another seed is another market."""
    one = SyntheticMarket(seed=7).bars("BTC-USD", "1h").close
    other = SyntheticMarket(seed=8).bars("BTC-USD", "1h").close
    assert not np.array_equal(one, other)


@pytest.mark.parametrize("timeframe", TIMEFRAMES)
def test_bars_are_well_formed(market: SyntheticMarket, timeframe: str) -> None:
    """500 bars ending 2026-01-01T00:00Z, evenly spaced, with coherent OHLC."""
    bars = market.bars("SOL-USD", timeframe)
    assert 500 == len(bars)
    assert END_TIME == int(bars.time[-1])
    assert 1 == len(set(np.diff(bars.time).tolist()))
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))
    assert np.all(bars.low <= np.minimum(bars.open, bars.close))
    assert np.all(bars.low > 0)
    assert np.all(bars.volume > 0)


def test_cached_series_cannot_be_changed(market: SyntheticMarket) -> None:
    """Callers share the cached arrays, so they are read-only."""
    with pytest.raises(ValueError, match="read-only"):
        market.bars("BTC-USD", "1h").close[0] = 1.0


def test_other_venues_track_the_primary_closely(market: SyntheticMarket) -> None:
    """Another venue is the primary times a basis within a few tenths of a percent."""
    primary = market.bars("ADA-USD", "1h").close
    other = market.bars("ADA-USD", "1h", "gamma").close
    ratio = other[:-2] / primary[:-2]
    assert np.all(np.abs(ratio - 1.0) < 0.005)
    assert not np.array_equal(primary, other)


def test_every_symbol_has_funding_rates(market: SyntheticMarket) -> None:
    """Funding per 8h for every symbol; a few are extreme."""
    rates = {s: market.funding_rates(s) for s in market.symbols()}
    assert all(r is not None and len(r) >= 30 and np.all(np.isfinite(r)) for r in rates.values())
    extreme = [s for s, r in rates.items() if r is not None and abs(r[-1]) > 5e-4]
    assert 2 <= len(extreme) <= 10


def test_latency_is_paid_on_every_call() -> None:
    """latency_ms=50 makes even a cached fetch take at least 50 ms."""
    slow = SyntheticMarket(latency_ms=50)
    slow.bars("BTC-USD", "1h")
    started = time.perf_counter()
    slow.bars("BTC-USD", "1h")
    assert time.perf_counter() - started >= 0.05


@pytest.mark.parametrize(
    ("symbol", "timeframe", "venue", "message"),
    [
        ("NOPE-USD", "1h", None, "unknown symbol 'NOPE-USD'"),
        ("BTC-USD", "2h", None, "unknown timeframe '2h'"),
        ("BTC-USD", "1h", "delta", "unknown venue 'delta'"),
    ],
)
def test_unknown_requests_are_market_data_errors(
    market: SyntheticMarket, symbol: str, timeframe: str, venue: str | None, message: str
) -> None:
    """An unknown symbol, timeframe or venue is refused with a clear message."""
    with pytest.raises(MarketDataError, match=message):
        market.bars(symbol, timeframe, venue)


def test_unknown_symbol_has_no_funding(market: SyntheticMarket) -> None:
    """Funding for an unknown symbol is refused too."""
    with pytest.raises(MarketDataError, match="unknown symbol"):
        market.funding_rates("NOPE-USD")


def test_a_small_universe_still_works() -> None:
    """Fewer symbols than named coins: only named coins, all servable."""
    small = SyntheticMarket(n_symbols=5)
    assert 5 == len(small.symbols())
    assert all(500 == len(small.bars(s, "1d")) for s in small.symbols())
