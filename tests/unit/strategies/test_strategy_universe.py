"""Every built-in strategy on the default synthetic universe."""

from __future__ import annotations

import pytest

from oppscan.market import SyntheticMarket
from oppscan.strategies import BUILTIN_STRATEGIES, Strategy, StrategyContext
from tests.unit.strategies.strategy_fakes import found


@pytest.fixture(scope="module")
def universe() -> StrategyContext:
    market = SyntheticMarket()
    return StrategyContext(market, tuple(market.symbols()), "1h")


@pytest.mark.parametrize("strategy", BUILTIN_STRATEGIES, ids=lambda s: s.name)
def test_each_strategy_finds_something_on_the_default_universe(
    strategy: Strategy, universe: StrategyContext
) -> None:
    """At 1h, every built-in finds at least one sound opportunity."""
    symbols = found(strategy, universe)
    assert [] != symbols
    assert set(universe.symbols) >= {symbol for symbol, _ in symbols}
