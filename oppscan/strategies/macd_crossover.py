"""MACD crossover: the MACD line crosses its signal line."""

from __future__ import annotations

import talib

from oppscan.market.base import Bars
from oppscan.strategies._common import PerSymbol, exits, finite, last_atr, ohlcv, side_of, squash
from oppscan.strategies.base import Opportunity


class MacdCrossover(PerSymbol):
    name = "macd_crossover"
    description = "Trades MACD(12,26,9) crossing its signal line within the last two bars."

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        macd, _, hist = talib.MACD(s.close, 12, 26, 9)
        atr = last_atr(s)
        if not finite(hist[-1], hist[-2], hist[-3], hist[-4], atr) or atr <= 0 or hist[-1] == 0:
            return None
        # The histogram (MACD minus signal) changed sign on the last bar, or the one before.
        flipped = [k for k in (1, 2) if hist[-k - 1] * hist[-1] <= 0 and hist[-k] * hist[-1] > 0]
        if not flipped:
            return None
        side = side_of(hist[-1])
        way = "above" if side == "long" else "below"
        when = "on the last bar" if flipped[0] == 1 else "one bar ago"
        zone = "below" if macd[-1] < 0 else "above"
        signal = f"MACD(12,26,9) crossed {way} its signal line {when}, {zone} the zero line"
        strength = abs(float(hist[-1] - hist[-4])) / atr
        found = exits(float(s.close[-1]), side, 1.5 * atr, 2.5 * atr)
        return self.make(bars, side, squash(strength, 0.3), found, signal)
