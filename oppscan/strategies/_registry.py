"""The built-in strategies, and plugins from the `oppscan.strategies` entry-point group."""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from oppscan.strategies.base import Strategy
from oppscan.strategies.cross_venue_arbitrage import CrossVenueArbitrage
from oppscan.strategies.donchian_breakout import DonchianBreakout
from oppscan.strategies.funding_rate_arbitrage import FundingRateArbitrage
from oppscan.strategies.ma_crossover import MaCrossover
from oppscan.strategies.macd_crossover import MacdCrossover
from oppscan.strategies.mean_reversion import MeanReversion
from oppscan.strategies.momentum import Momentum
from oppscan.strategies.pairs_trading import PairsTrading
from oppscan.strategies.rsi_reversal import RsiReversal
from oppscan.strategies.statistical_arbitrage import StatisticalArbitrage
from oppscan.strategies.support_resistance import SupportResistance
from oppscan.strategies.trend_following import TrendFollowing
from oppscan.strategies.volatility_squeeze import VolatilitySqueeze
from oppscan.strategies.volume_spike import VolumeSpike

ENTRY_POINT_GROUP = "oppscan.strategies"

log = logging.getLogger("oppscan.strategies")

BUILTIN_STRATEGIES: tuple[Strategy, ...] = (
    Momentum(),
    MeanReversion(),
    DonchianBreakout(),
    RsiReversal(),
    MacdCrossover(),
    MaCrossover(),
    VolatilitySqueeze(),
    VolumeSpike(),
    SupportResistance(),
    TrendFollowing(),
    PairsTrading(),
    StatisticalArbitrage(),
    CrossVenueArbitrage(),
    FundingRateArbitrage(),
)


def _is_strategy(obj: object) -> bool:
    return (
        not isinstance(obj, type)
        and isinstance(getattr(obj, "name", None), str)
        and bool(getattr(obj, "name", ""))
        and isinstance(getattr(obj, "description", None), str)
        and callable(getattr(obj, "run", None))
    )


def _load(entry_point: importlib.metadata.EntryPoint) -> Strategy | None:
    """The plugin's strategy: the loaded object itself, or what calling it returns."""
    try:
        loaded: Any = entry_point.load()
        strategy = loaded if _is_strategy(loaded) else loaded()
    except Exception:
        log.exception("strategy plugin %r failed to load; ignored", entry_point.name)
        return None
    if not _is_strategy(strategy):
        log.error("strategy plugin %r is not a strategy (%r); ignored", entry_point.name, strategy)
        return None
    found: Strategy = strategy
    return found


@functools.cache
def available_strategies() -> Mapping[str, Strategy]:
    """Built-ins and plugins by name, sorted; a plugin never replaces a built-in."""
    found: dict[str, Strategy] = {s.name: s for s in BUILTIN_STRATEGIES}
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        strategy = _load(entry_point)
        if strategy is None:
            continue
        if strategy.name in found:
            log.error(
                "strategy plugin %r clashes with strategy %r; ignored",
                entry_point.name,
                strategy.name,
            )
            continue
        found[strategy.name] = strategy
    return MappingProxyType(dict(sorted(found.items())))
