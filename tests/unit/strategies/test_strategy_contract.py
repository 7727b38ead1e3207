"""What every built-in strategy promises, whatever its signal."""

from __future__ import annotations

import re

import numpy as np
import pytest

from oppscan.market import Bars, MarketDataError
from oppscan.strategies import BUILTIN_STRATEGIES, Strategy, StrategyContext, available_strategies
from tests.unit.strategies.strategy_fakes import FakeMarket, bars_of, context, flat, found, quiet

NAMES = (
    "momentum",
    "mean_reversion",
    "donchian_breakout",
    "rsi_reversal",
    "macd_crossover",
    "ma_crossover",
    "volatility_squeeze",
    "volume_spike",
    "support_resistance",
    "trend_following",
    "pairs_trading",
    "statistical_arbitrage",
    "cross_venue_arbitrage",
    "funding_rate_arbitrage",
)
BY_NAME = pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES, ids=lambda s: s.name)


def test_there_are_fourteen_builtins_in_a_stable_order() -> None:
    """The built-ins, by name, in the documented order."""
    assert NAMES == tuple(s.name for s in BUILTIN_STRATEGIES)


@BY_NAME
def test_each_strategy_describes_itself_in_one_line(strategy: Strategy) -> None:
    """A snake_case name and a one-line description for API clients."""
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", strategy.name)
    assert 20 < len(strategy.description) <= 100
    assert "\n" not in strategy.description


@BY_NAME
def test_a_flat_market_offers_nothing(strategy: Strategy) -> None:
    """Flat prices on two venues, with ordinary funding: no signal, and no NaN leaks out."""
    symbols = ("A", "B", "C")
    bars = [bars_of(s, flat(), venue=v) for s in symbols for v in ("main", "other")]
    rates = {s: np.full(30, 1e-4) for s in symbols}
    assert [] == found(strategy, context(*bars, venues=("main", "other"), funding=rates))


class BrokenMarket(FakeMarket):
    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        raise MarketDataError(f"/data/{symbol}.csv: row 3: cannot parse close 'x'")


@BY_NAME
def test_a_market_data_error_propagates(strategy: Strategy) -> None:
    """A bad file fails the strategy with the market's own message."""
    rates = {s: np.full(30, 3e-3) for s in ("A", "B", "C")}
    market = BrokenMarket([], venues=("main", "other"), funding=rates)
    with pytest.raises(MarketDataError, match="row 3"):
        strategy.run(StrategyContext(market, ("A", "B", "C"), "1h"))


@pytest.mark.parametrize(
    "strategy", [s for s in BUILTIN_STRATEGIES if s.name in NAMES[:10]], ids=lambda s: s.name
)
def test_too_short_a_series_is_skipped_over(strategy: Strategy) -> None:
    """A symbol with too few bars for the indicators is left out, not an error."""
    closes = quiet(25)
    closes[-1] = 110.0
    assert [] == found(strategy, context(bars_of("SHORT", closes)))


def test_available_strategies_are_read_only_and_sorted() -> None:
    """The registry maps every built-in by name, sorted, and cannot be changed."""
    strategies = available_strategies()
    assert sorted(NAMES) == list(strategies)
    with pytest.raises(TypeError):
        strategies["extra"] = BUILTIN_STRATEGIES[0]  # type: ignore[index]
