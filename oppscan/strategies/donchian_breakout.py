"""Donchian breakout: a fresh close outside the 20-bar high/low channel."""

from __future__ import annotations

import talib

from oppscan.market.base import Bars
from oppscan.strategies._common import PerSymbol, exits, finite, last_atr, ohlcv, price, squash
from oppscan.strategies.base import Opportunity, Side

PERIOD = 20


class DonchianBreakout(PerSymbol):
    name = "donchian_breakout"
    description = (
        "Follows a fresh close beyond the 20-bar Donchian channel, aiming one channel width."
    )

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        high, low = talib.MAX(s.high, PERIOD), talib.MIN(s.low, PERIOD)
        close, before, atr = float(s.close[-1]), float(s.close[-2]), last_atr(s)
        if not finite(high[-3], low[-3], atr) or atr <= 0:
            return None
        # The channel as it stood before this bar; the bar before must have been inside it.
        side: Side
        if close > high[-2] and before <= high[-3]:
            side, level, edge = "long", float(high[-2]), "high"
        elif close < low[-2] and before >= low[-3]:
            side, level, edge = "short", float(low[-2]), "low"
        else:
            return None
        beyond = abs(close - level) / atr
        signal = (
            f"close {price(close)} broke the {PERIOD}-bar {edge} {price(level)} by {beyond:.1f} ATR"
        )
        found = exits(close, side, 2.0 * atr, float(high[-2] - low[-2]))
        return self.make(bars, side, squash(beyond, 0.75), found, signal)
