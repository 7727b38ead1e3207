"""What the built-in strategies share: fetching bars, exits, scores, timestamps.

Every opportunity is built by `opportunity()`, which refuses anything that is
not finite or whose stop and target are not on the correct sides of entry, so a
strategy never has to repeat those checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import talib

from oppscan.market.base import Bars, FloatArray, SeriesKey
from oppscan.strategies.base import Opportunity, Side, StrategyContext, Universe

MIN_BARS = 60


def f64(values: npt.ArrayLike) -> FloatArray:
    """TA-Lib wants contiguous float64."""
    return np.ascontiguousarray(values, dtype=np.float64)


class Ohlcv(NamedTuple):
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray


def ohlcv(bars: Bars) -> Ohlcv:
    return Ohlcv(f64(bars.open), f64(bars.high), f64(bars.low), f64(bars.close), f64(bars.volume))


def fetch(ctx: StrategyContext, min_bars: int = MIN_BARS) -> list[Bars]:
    """Primary-venue bars of each requested symbol that has at least `min_bars`."""
    found = []
    for symbol in ctx.symbols:
        bars = ctx.market.bars(symbol, ctx.timeframe)
        if len(bars) >= min_bars:
            found.append(bars)
    return found


def aligned_closes(
    series: Sequence[Bars], length: int, minimum: int | None = None
) -> FloatArray | None:
    """Closes (a row per series) over the last `length` timestamps all of them share.

    Fewer shared timestamps are fine down to `minimum` (default: `length`); below it, None.
    """
    if not series:
        return None
    first = series[0].time
    common = first
    if not all(np.array_equal(first, bars.time) for bars in series[1:]):
        for bars in series[1:]:
            common = np.intersect1d(common, bars.time, assume_unique=True)
    if common.shape[0] < (length if minimum is None else minimum):
        return None
    times = common[-length:]
    return np.vstack([bars.close[np.searchsorted(bars.time, times)] for bars in series])


def last_atr(s: Ohlcv, period: int = 14) -> float:
    return float(talib.ATR(s.high, s.low, s.close, timeperiod=period)[-1])


def finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def squash(excess: float, scale: float) -> float:
    """Map how far a signal clears its threshold to a score in [0, 1)."""
    if not math.isfinite(excess) or excess <= 0:
        return 0.0
    return 1.0 - math.exp(-excess / scale)


def side_of(sign: float) -> Side:
    return "long" if sign > 0 else "short"


def exits(entry: float, side: Side, risk: float, reward: float) -> tuple[float, float]:
    """(stop, target): `risk` against the side from entry, `reward` with it."""
    d = 1.0 if side == "long" else -1.0
    return entry - d * risk, entry + d * reward


def as_of(bars: Bars) -> str:
    """ISO-8601 UTC time of the last bar."""
    return datetime.fromtimestamp(int(bars.time[-1]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def price(value: float) -> str:
    """A price for a human sentence: six significant digits."""
    return f"{value:.6g}"


def opportunity(
    bars: Bars, strategy: str, side: Side, score: float, stop: float, target: float, signal: str
) -> Opportunity | None:
    """An opportunity entered at the last close; None unless every number is sound."""
    entry = float(bars.close[-1])
    if not finite(entry, score, stop, target) or min(entry, stop, target) <= 0:
        return None
    if not (stop < entry < target if side == "long" else target < entry < stop):
        return None
    reward, risk = abs(target - entry), abs(entry - stop)
    return Opportunity(
        symbol=bars.symbol,
        strategy=strategy,
        side=side,
        score=min(1.0, max(0.0, score)),
        entry_price=entry,
        stop_loss=float(stop),
        take_profit=float(target),
        expected_return=reward / entry,
        risk_reward=reward / risk,
        timeframe=bars.timeframe,
        signal=signal,
        as_of=as_of(bars),
    )


class PerSymbol:
    """A strategy that looks at one symbol at a time: subclasses write `evaluate`."""

    name: str
    description: str
    min_bars: int = MIN_BARS

    def needs(self, universe: Universe) -> list[SeriesKey]:
        return universe.primary_bars()

    def run(self, ctx: StrategyContext) -> list[Opportunity]:
        found = (self.evaluate(bars) for bars in fetch(ctx, self.min_bars))
        return [o for o in found if o is not None]

    def evaluate(self, bars: Bars) -> Opportunity | None:
        raise NotImplementedError

    def make(
        self, bars: Bars, side: Side, score: float, exits: tuple[float, float], signal: str
    ) -> Opportunity | None:
        return opportunity(bars, self.name, side, score, exits[0], exits[1], signal)

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"
