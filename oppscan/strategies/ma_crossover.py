"""Moving-average crossover: SMA(20) crosses SMA(50) (golden / death cross)."""

from __future__ import annotations

import numpy as np
import talib

from oppscan.market.base import Bars
from oppscan.strategies._common import PerSymbol, exits, last_atr, ohlcv, side_of, squash
from oppscan.strategies.base import Opportunity

FAST, SLOW, RECENT = 20, 50, 3


class MaCrossover(PerSymbol):
    name = "ma_crossover"
    description = "Follows SMA(20) crossing SMA(50) (golden or death cross) within three bars."

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        fast = talib.SMA(s.close, FAST)
        gap = (fast - talib.SMA(s.close, SLOW))[-RECENT - 1 :]
        atr = last_atr(s)
        if np.isnan(gap).any() or not atr > 0 or gap[-1] == 0:
            return None
        before = np.flatnonzero(gap[:-1] * gap[-1] <= 0)  # bars still on the other side
        if before.size == 0:
            return None
        side = side_of(gap[-1])
        way, kind = ("above", "golden") if side == "long" else ("below", "death")
        ago = RECENT - 1 - int(before[-1])
        when = "on the last bar" if ago == 0 else "one bar ago" if ago == 1 else f"{ago} bars ago"
        signal = f"SMA({FAST}) crossed {way} SMA({SLOW}) ({kind} cross) {when}"
        slope = abs(float(fast[-1] - fast[-RECENT - 1])) / atr
        found = exits(float(s.close[-1]), side, 2.0 * atr, 4.0 * atr)
        return self.make(bars, side, squash(slope, 0.5), found, signal)
