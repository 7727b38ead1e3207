"""Strategies over several symbols or venues: pairs, stat arb, cross-venue, funding."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from oppscan.market.base import Bars, FloatArray
from oppscan.strategies import StrategySkipped, available_strategies
from oppscan.strategies.base import Strategy
from tests.unit.strategies.strategy_fakes import bars_of, context, found, walk


def strategy(name: str) -> Strategy:
    return available_strategies()[name]


def cointegrated_pair(last_spread: float) -> tuple[Bars, Bars]:
    """Y = e^0.5 * X^1.2 * e^spread, the spread a fast AR(1) ending at `last_spread`."""
    x = walk(400, seed=5)
    rng = np.random.default_rng(9)
    spread = np.zeros(400)
    for i in range(1, 400):
        spread[i] = 0.7 * spread[i - 1] + 0.003 * rng.standard_normal()
    spread[-1] = last_spread
    return bars_of("Y", np.exp(0.5 + 1.2 * np.log(x) + spread)), bars_of("X", x)


def test_pairs_trading_sells_the_rich_leg_and_buys_the_cheap_one() -> None:
    """A stretched spread of a cointegrated pair gives both legs."""
    y, x = cointegrated_pair(0.03)
    opportunities = strategy("pairs_trading").run(context(y, x))
    assert [("Y", "short"), ("X", "long")] == [(o.symbol, o.side) for o in opportunities]
    assert "sell Y, buy X" in opportunities[0].signal


def test_pairs_trading_waits_while_the_spread_is_normal() -> None:
    """The same pair with an ordinary spread gives nothing."""
    y, x = cointegrated_pair(0.0)
    assert [] == found(strategy("pairs_trading"), context(y, x))


def test_pairs_trading_ignores_unrelated_walks() -> None:
    """Two independent random walks are no pair."""
    ctx = context(bars_of("A", walk(400, seed=1)), bars_of("B", walk(400, seed=2)))
    assert [] == found(strategy("pairs_trading"), ctx)


def test_pairs_trading_skips_a_single_symbol() -> None:
    """One symbol makes no pair: skipped, with the reason."""
    with pytest.raises(StrategySkipped, match="at least 2 symbols"):
        strategy("pairs_trading").run(context(bars_of("X", walk(400))))


def factor_universe(push: float, bars: int = 300) -> list[Bars]:
    """Eight symbols driven by one factor; S2 adds `push` a bar over the last ten bars."""
    rng = np.random.default_rng(2)
    factor = 0.01 * rng.standard_normal(300)
    returns = [0.8 * factor + 0.004 * rng.standard_normal(300) for _ in range(8)]
    returns[2][-10:] += push
    closes = [100.0 * np.exp(np.cumsum(r[-bars:])) for r in returns]
    return [bars_of(f"S{i}", c) for i, c in enumerate(closes)]


def test_statistical_arbitrage_fades_an_unexplained_move() -> None:
    """A symbol that rallies on its own, against the common factor, is a short."""
    ctx = context(*factor_universe(0.01))
    assert [("S2", "short")] == found(strategy("statistical_arbitrage"), ctx)


def test_statistical_arbitrage_is_quiet_when_the_factor_explains_all() -> None:
    """Without an idiosyncratic move there is nothing to fade."""
    assert [] == found(strategy("statistical_arbitrage"), context(*factor_universe(0.0)))


def test_statistical_arbitrage_skips_fewer_than_three_symbols() -> None:
    """Two symbols make no universe: skipped, with the reason."""
    with pytest.raises(StrategySkipped, match="at least 3 symbols"):
        strategy("statistical_arbitrage").run(context(*factor_universe(0.0)[:2]))


def two_venues(last_gap: float) -> tuple[Bars, Bars]:
    closes = walk(300, seed=2)
    basis = 1.0003 + 0.0001 * np.random.default_rng(3).standard_normal(300)
    basis[-1] *= 1.0 + last_gap
    return bars_of("CV", closes), bars_of("CV", closes * basis, venue="other")


def test_cross_venue_arbitrage_buys_where_it_is_cheap() -> None:
    """The other venue 1% rich on the last bar: buy on the primary, sell there."""
    ctx = context(*two_venues(0.01), venues=("main", "other"))
    opportunities = strategy("cross_venue_arbitrage").run(ctx)
    assert [("CV", "long")] == [(o.symbol, o.side) for o in opportunities]
    assert "buy on main, sell on other" in opportunities[0].signal


def test_cross_venue_arbitrage_sells_where_it_is_rich() -> None:
    """The other venue 1% cheap: the primary is the one to sell."""
    ctx = context(*two_venues(-0.01), venues=("main", "other"))
    assert [("CV", "short")] == found(strategy("cross_venue_arbitrage"), ctx)


def test_cross_venue_arbitrage_ignores_gaps_inside_fees() -> None:
    """A 0.1% gap does not pay for two legs of fees."""
    ctx = context(*two_venues(0.001), venues=("main", "other"))
    assert [] == found(strategy("cross_venue_arbitrage"), ctx)


def test_cross_venue_arbitrage_skips_a_single_venue() -> None:
    """One venue: skipped, with the reason."""
    with pytest.raises(StrategySkipped, match="market offers one venue"):
        strategy("cross_venue_arbitrage").run(context(bars_of("CV", walk(300))))


def funding(last: float) -> FloatArray:
    return np.concatenate([np.full(20, 1e-4), np.full(3, last)])


def test_funding_rate_arbitrage_collects_from_the_crowded_side() -> None:
    """Longs paying 0.2% a period: short the perp; shorts paying 0.1%: long it."""
    closes = walk(300)
    bars = [bars_of(symbol, closes) for symbol in ("HOT", "COLD", "CALM")]
    rates = {"HOT": funding(2e-3), "COLD": funding(-1e-3), "CALM": funding(1e-4)}
    ctx = context(*bars, funding=rates)
    assert [("HOT", "short"), ("COLD", "long")] == found(strategy("funding_rate_arbitrage"), ctx)


def test_funding_rate_arbitrage_skips_a_market_without_funding() -> None:
    """No funding rates for any symbol: skipped, with the reason."""
    with pytest.raises(StrategySkipped, match="no funding rates"):
        strategy("funding_rate_arbitrage").run(context(bars_of("SPOT", walk(300))))


def test_pairs_trading_skips_symbols_without_shared_history() -> None:
    """Two symbols whose bars do not overlap cannot be paired: skipped, with the reason."""
    early = bars_of("EARLY", walk(200))
    late = bars_of("LATE", walk(200, seed=2))
    late = replace(late, time=late.time + 400 * 3600)
    with pytest.raises(StrategySkipped, match="share 120 bars"):
        strategy("pairs_trading").run(context(early, late))


def test_statistical_arbitrage_works_on_a_shorter_shared_history() -> None:
    """150 bars (fewer than the full 240-bar lookback) are still enough."""
    ctx = context(*factor_universe(0.01, bars=150))
    assert [("S2", "short")] == found(strategy("statistical_arbitrage"), ctx)
