"""Volume spike: a bar on several times its usual volume, with a real price move."""

from __future__ import annotations

import talib

from oppscan.market.base import Bars
from oppscan.strategies._common import PerSymbol, finite, last_atr, ohlcv, side_of, squash
from oppscan.strategies.base import Opportunity

RATIO = 3.0  # last volume over the 20-bar average before it
MIN_BODY_ATR = 0.5  # the bar's body, in ATR: volume without a move says little


class VolumeSpike(PerSymbol):
    name = "volume_spike"
    description = (
        "Follows a bar on 3x its 20-bar average volume whose body spans at least half an ATR."
    )

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        usual = float(talib.SMA(s.volume, 20)[-2])
        atr = last_atr(s)
        if not finite(usual, atr) or usual <= 0 or atr <= 0:
            return None
        ratio = float(s.volume[-1]) / usual
        body = float(s.close[-1] - s.open[-1])
        if ratio < RATIO or abs(body) < MIN_BODY_ATR * atr:
            return None
        side = side_of(body)
        # Stop beyond the spike bar's extreme; aim for 2.5 ATR or 1.5x that risk if wider.
        entry = float(s.close[-1])
        stop = float(s.low[-1]) - 0.25 * atr if side == "long" else float(s.high[-1]) + 0.25 * atr
        reach = max(2.5 * atr, 1.5 * abs(entry - stop))
        exits = (stop, entry + reach if side == "long" else entry - reach)
        way = "up" if side == "long" else "down"
        signal = (
            f"volume {ratio:.1f}x its 20-bar average on a {way} bar of {abs(body) / atr:.1f} ATR"
        )
        return self.make(bars, side, squash(ratio - RATIO, 3.0), exits, signal)
