"""Trend following: a strong, strengthening trend by ADX and the directional indicators."""

from __future__ import annotations

import talib

from oppscan.market.base import Bars
from oppscan.strategies._common import PerSymbol, finite, last_atr, ohlcv, side_of, squash
from oppscan.strategies.base import Opportunity

MIN_ADX = 25.0


class TrendFollowing(PerSymbol):
    name = "trend_following"
    description = (
        "Joins a trend when ADX(14) is above 25 and rising, on the side of the stronger DI."
    )
    min_bars = 100

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        adx = talib.ADX(s.high, s.low, s.close, 14)
        plus = float(talib.PLUS_DI(s.high, s.low, s.close, 14)[-1])
        minus = float(talib.MINUS_DI(s.high, s.low, s.close, 14)[-1])
        ema = float(talib.EMA(s.close, 50)[-1])
        atr, entry = last_atr(s), float(s.close[-1])
        if not finite(adx[-1], adx[-4], plus, minus, ema, atr) or atr <= 0:
            return None
        if adx[-1] < MIN_ADX or adx[-1] <= adx[-4] or (entry - ema) * (plus - minus) <= 0:
            return None
        side = side_of(plus - minus)
        # A chandelier stop: three ATRs from the extreme of the last 22 bars.
        if side == "long":
            stop = min(entry - atr, float(s.high[-22:].max()) - 3.0 * atr)
        else:
            stop = max(entry + atr, float(s.low[-22:].min()) + 3.0 * atr)
        target = entry + 4.0 * atr if side == "long" else entry - 4.0 * atr
        strong, weak = ("+DI", "-DI") if side == "long" else ("-DI", "+DI")
        signal = (
            f"ADX(14) {adx[-1]:.0f} and rising, {strong} {max(plus, minus):.0f} "
            f"over {weak} {min(plus, minus):.0f}, price on that side of EMA(50)"
        )
        score = squash(float(adx[-1]) - MIN_ADX, 15.0)
        return self.make(bars, side, score, (stop, target), signal)
