"""Momentum: a 24-bar move that is large for the symbol's own volatility."""

from __future__ import annotations

import math

import numpy as np
import talib

from oppscan.market.base import Bars
from oppscan.strategies._common import PerSymbol, exits, finite, last_atr, ohlcv, side_of, squash
from oppscan.strategies.base import Opportunity

LOOKBACK = 24
THRESHOLD = 1.5  # the move, in standard deviations of a LOOKBACK-bar return


class Momentum(PerSymbol):
    name = "momentum"
    description = "Rides a 24-bar move that is large for the symbol's volatility, with the EMA(50)."
    min_bars = 120

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        move = float(talib.ROCP(s.close, LOOKBACK)[-1])
        usual = float(talib.STDDEV(np.diff(np.log(s.close)), 100)[-1]) * math.sqrt(LOOKBACK)
        ema = talib.EMA(s.close, 50)
        z = move / usual if usual > 0 else math.nan
        if not finite(z, ema[-1], ema[-6]) or abs(z) < THRESHOLD:
            return None
        # Only with the trend: price on the same side of a sloping EMA(50).
        if (s.close[-1] - ema[-1]) * z <= 0 or (ema[-1] - ema[-6]) * z <= 0:
            return None
        side = side_of(z)
        where = "above" if side == "long" else "below"
        signal = f"{LOOKBACK}-bar return {move:+.1%} (z {z:+.1f}), price {where} a sloping EMA(50)"
        atr = last_atr(s)
        found = exits(float(s.close[-1]), side, 2.0 * atr, 3.0 * atr)
        return self.make(bars, side, squash(abs(z) - THRESHOLD, 1.5), found, signal)
