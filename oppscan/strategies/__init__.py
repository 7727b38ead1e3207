"""Strategies: plain functions of market data that turn bars into opportunities.

`BUILTIN_STRATEGIES` holds the fourteen built-ins; `available_strategies()` adds
plugins registered in the `oppscan.strategies` entry-point group.
"""

from oppscan.strategies._registry import BUILTIN_STRATEGIES, ENTRY_POINT_GROUP, available_strategies
from oppscan.strategies.base import (
    Opportunity,
    Side,
    Strategy,
    StrategyContext,
    StrategySkipped,
    Universe,
    series_needed,
)

__all__ = [
    "BUILTIN_STRATEGIES",
    "ENTRY_POINT_GROUP",
    "Opportunity",
    "Side",
    "Strategy",
    "StrategyContext",
    "StrategySkipped",
    "Universe",
    "available_strategies",
    "series_needed",
]
