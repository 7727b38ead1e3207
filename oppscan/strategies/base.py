"""The strategy interface: plain functions of market data, no I/O of their own."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from oppscan.market.base import MarketData, SeriesKey

Side = Literal["long", "short"]


class StrategySkipped(Exception):
    """The data cannot feed this strategy (e.g. no second venue). Not a failure."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Opportunity:
    """One ranked trade idea. Stop and target lie on the correct sides of entry."""

    symbol: str
    strategy: str
    side: Side
    score: float
    entry_price: float
    stop_loss: float
    take_profit: float
    expected_return: float
    risk_reward: float
    timeframe: str
    signal: str
    as_of: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StrategyContext:
    """What one strategy run sees: the market, the symbols asked for, the timeframe."""

    market: MarketData
    symbols: tuple[str, ...]
    timeframe: str


class Strategy(Protocol):
    """A named, described signal generator. Raises StrategySkipped when it cannot run."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str: ...

    def run(self, ctx: StrategyContext) -> Sequence[Opportunity]: ...


@dataclass(frozen=True)
class Universe:
    """What a scan's plan knows before any fetch: the symbols and timeframe asked
    for, and the source's venues (the primary one first)."""

    symbols: tuple[str, ...]
    timeframe: str
    venues: tuple[str, ...]

    def primary_bars(self) -> list[SeriesKey]:
        """Bars of every symbol on the primary venue: what most strategies read."""
        return [SeriesKey.bars(self.venues[0], s, self.timeframe) for s in self.symbols]


@runtime_checkable
class DeclaresSeries(Protocol):
    """A strategy that says which series it reads, so the scan fetches them first.

    Optional for plugins: one that does not declare gets `primary_bars`, and
    reads anything else through the shared cache as it runs.
    """

    def needs(self, universe: Universe) -> Iterable[SeriesKey]: ...


def series_needed(strategy: Strategy, universe: Universe) -> frozenset[SeriesKey]:
    """The series `strategy` reads on `universe`."""
    if isinstance(strategy, DeclaresSeries):
        return frozenset(strategy.needs(universe))
    return frozenset(universe.primary_bars())
