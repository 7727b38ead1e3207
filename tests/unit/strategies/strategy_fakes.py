"""Crafted series and a tiny in-memory market for strategy unit tests."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from oppscan.market import Bars, MarketDataError
from oppscan.market.base import FloatArray
from oppscan.strategies import Opportunity, Strategy, StrategyContext

END = 1_767_225_600  # 2026-01-01T00:00:00Z
HOUR = 3600


def bars_of(
    symbol: str,
    closes: npt.ArrayLike,
    *,
    venue: str = "main",
    wick: float = 0.002,
    volume: npt.ArrayLike | None = None,
    opens: npt.ArrayLike | None = None,
) -> Bars:
    """Hourly bars ending at END: each opens at the previous close, wicks `wick` beyond."""
    close = np.asarray(closes, dtype=np.float64)
    n = close.shape[0]
    open_ = np.concatenate(([close[0]], close[:-1])) if opens is None else np.asarray(opens, float)
    return Bars(
        symbol=symbol,
        venue=venue,
        timeframe="1h",
        time=END - HOUR * np.arange(n - 1, -1, -1, dtype=np.int64),
        open=open_,
        high=np.maximum(open_, close) * (1 + wick),
        low=np.minimum(open_, close) * (1 - wick),
        close=close,
        volume=np.full(n, 1000.0) if volume is None else np.asarray(volume, float),
    )


def quiet(n: int, seed: int = 1, level: float = 100.0, noise: float = 0.003) -> FloatArray:
    """Closes scattered around a level: no trend, no memory."""
    rng = np.random.default_rng(seed)
    return level * (1 + noise * rng.standard_normal(n))


def walk(n: int, seed: int = 1, start: float = 100.0, sigma: float = 0.01) -> FloatArray:
    rng = np.random.default_rng(seed)
    return start * np.exp(np.cumsum(sigma * rng.standard_normal(n)))


def flat(n: int = 300, level: float = 100.0) -> FloatArray:
    return np.full(n, level)


class FakeMarket:
    """Serves the given bars (by symbol and venue) and, optionally, funding rates."""

    name = "fake"

    def __init__(
        self,
        bars: Iterable[Bars],
        venues: Sequence[str] = ("main",),
        funding: Mapping[str, FloatArray | None] | None = None,
    ) -> None:
        self._bars = {(b.symbol, b.venue): b for b in bars}
        self._venues = tuple(venues)
        self._funding = dict(funding or {})

    def symbols(self) -> Sequence[str]:
        return sorted({symbol for symbol, _ in self._bars})

    def venues(self) -> Sequence[str]:
        return self._venues

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        key = (symbol, venue or self._venues[0])
        if key not in self._bars:
            raise MarketDataError(f"no bars for {key}")
        return self._bars[key]

    def funding_rates(self, symbol: str) -> FloatArray | None:
        return self._funding.get(symbol)


def context(
    *bars: Bars,
    venues: Sequence[str] = ("main",),
    funding: Mapping[str, FloatArray | None] | None = None,
) -> StrategyContext:
    """A 1h context over the primary-venue symbols of `bars`."""
    symbols = tuple(dict.fromkeys(b.symbol for b in bars if b.venue == venues[0]))
    return StrategyContext(FakeMarket(bars, venues, funding), symbols, "1h")


def found(strategy: Strategy, ctx: StrategyContext) -> list[tuple[str, str]]:
    """(symbol, side) of what `strategy` finds, after checking each is sound."""
    opportunities = strategy.run(ctx)
    for opportunity in opportunities:
        assert_sound(opportunity)
        assert strategy.name == opportunity.strategy
    return [(o.symbol, o.side) for o in opportunities]


def assert_sound(o: Opportunity) -> None:
    """Every number finite, stop and target on the right sides, score within [0, 1]."""
    numbers = (o.score, o.entry_price, o.stop_loss, o.take_profit, o.expected_return, o.risk_reward)
    assert all(math.isfinite(v) for v in numbers)
    if o.side == "long":
        assert o.stop_loss < o.entry_price < o.take_profit
    else:
        assert o.take_profit < o.entry_price < o.stop_loss
    assert 0.0 <= o.score <= 1.0
    reward = abs(o.take_profit - o.entry_price)
    assert math.isclose(reward / o.entry_price, o.expected_return)
    assert math.isclose(reward / abs(o.entry_price - o.stop_loss), o.risk_reward)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", o.as_of)
    assert o.signal
