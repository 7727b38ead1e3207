"""Mean reversion: a close stretched outside its Bollinger bands in a ranging market."""

from __future__ import annotations

import talib

from oppscan.market.base import Bars
from oppscan.strategies._common import PerSymbol, finite, last_atr, ohlcv, side_of, squash
from oppscan.strategies.base import Opportunity

THRESHOLD = 2.0  # z-score of the close against its 20-bar mean
MAX_ADX = 30.0  # above this the market trends, and stretched prices keep going


class MeanReversion(PerSymbol):
    name = "mean_reversion"
    description = (
        "Fades a close beyond its 20-bar Bollinger bands while ADX says the market ranges."
    )

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        upper, middle, _ = talib.BBANDS(s.close, 20, 2.0, 2.0)
        deviation = (upper[-1] - middle[-1]) / 2.0
        adx = float(talib.ADX(s.high, s.low, s.close, 14)[-1])
        if not finite(deviation, adx) or deviation <= 0 or adx >= MAX_ADX:
            return None
        z = float((s.close[-1] - middle[-1]) / deviation)
        if abs(z) < THRESHOLD:
            return None
        side = side_of(-z)
        entry, atr = float(s.close[-1]), last_atr(s)
        stop = entry - atr if side == "long" else entry + atr
        where = "below" if z < 0 else "above"
        signal = f"close {where} its 20-bar mean (z {z:+.1f}) while ADX(14) is {adx:.0f} (ranging)"
        score = squash(abs(z) - THRESHOLD, 0.75)
        return self.make(bars, side, score, (stop, float(middle[-1])), signal)
