"""RSI reversal: RSI(14) leaves an oversold (or overbought) extreme."""

from __future__ import annotations

import numpy as np
import talib

from oppscan.market.base import Bars
from oppscan.strategies._common import PerSymbol, exits, last_atr, ohlcv, squash
from oppscan.strategies.base import Opportunity, Side

LOW, HIGH = 30.0, 70.0
RECENT = 3  # the cross happened within this many bars


class RsiReversal(PerSymbol):
    name = "rsi_reversal"
    description = (
        "Buys RSI(14) crossing back above 30 from oversold; sells it crossing back below 70."
    )

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        rsi = talib.RSI(s.close, 14)
        recent, now = rsi[-RECENT - 1 :], float(rsi[-1])
        if np.isnan(recent).any():
            return None
        side: Side
        if np.any((recent[:-1] < LOW) & (recent[1:] >= LOW)) and LOW <= now < 50:
            side, extreme = "long", float(np.min(rsi[-15:]))
            depth, words = LOW - extreme, f"back above {LOW:.0f} from oversold"
        elif np.any((recent[:-1] > HIGH) & (recent[1:] <= HIGH)) and 50 < now <= HIGH:
            side, extreme = "short", float(np.max(rsi[-15:]))
            depth, words = extreme - HIGH, f"back below {HIGH:.0f} from overbought"
        else:
            return None
        signal = f"RSI(14) crossed {words} at {extreme:.1f}; now {now:.1f}"
        atr = last_atr(s)
        found = exits(float(s.close[-1]), side, 1.5 * atr, 3.0 * atr)
        return self.make(bars, side, squash(depth, 8.0), found, signal)
