"""Support and resistance: a bounce off a recent pivot level.

Resistance is support seen upside down, so the short case runs the long logic
on the mirrored series (highs and lows swapped and negated).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import talib

from oppscan.market.base import Bars, FloatArray
from oppscan.strategies._common import Ohlcv, PerSymbol, finite, last_atr, ohlcv, price, squash
from oppscan.strategies.base import Opportunity, Side

LOOKBACK = 120  # bars searched for pivots
WING = 5  # a pivot low is the lowest low WING bars either side
RECENT = 3  # bars in which the level was tested
TOLERANCE_ATR = 0.5  # a low this close above the level, or twice this below it, tests it
MAX_AWAY_ATR = 2.0  # a close further from the level than this is no longer a fresh bounce


class Bounce(NamedTuple):
    level: float
    touches: int
    stop: float
    target: float


def _pivots(values: FloatArray, end: int) -> FloatArray:
    """Pivot lows of `values` confirmed before bar `end`, over the lookback."""
    lowest = talib.MIN(values, 2 * WING + 1)
    start = max(WING, end - LOOKBACK)
    idx = np.arange(start, end - WING)
    return np.asarray(values[idx][values[idx] == lowest[idx + WING]])


def find_bounce(s: Ohlcv, atr: float) -> Bounce | None:
    """A bounce off support in `s` (in long terms: mirror the series for resistance)."""
    n = len(s.close)
    supports = _pivots(s.low, n - RECENT)
    dip = float(s.low[-RECENT:].min())
    tolerance = TOLERANCE_ATR * atr
    lowest_close = float(s.close[-RECENT:].min())
    # Tested (a low came near, or wicked through) and held (no close beyond tolerance below it).
    tested = (dip <= supports + tolerance) & (dip >= supports - 2 * tolerance)
    near = supports[tested & (supports <= lowest_close + tolerance)]
    bounced = s.close[-1] > s.open[-1] and s.close[-1] > s.close[-2]
    if near.size == 0 or not bounced:
        return None
    level = float(near[np.argmin(np.abs(near - dip))])
    if not level < s.close[-1] <= level + MAX_AWAY_ATR * atr:
        return None
    touches = int(np.sum(np.abs(supports - level) <= tolerance))
    entry = float(s.close[-1])
    resistances = -_pivots(-s.high, n - RECENT)
    above = resistances[resistances > entry + atr]
    target = float(above.min()) if above.size else entry + 2.5 * atr
    return Bounce(level, touches, min(level, dip) - atr / 2, target)


def _mirror(s: Ohlcv) -> Ohlcv:
    return Ohlcv(-s.open, -s.low, -s.high, -s.close, s.volume)


class SupportResistance(PerSymbol):
    name = "support_resistance"
    description = (
        "Buys a bounce off a recent pivot support; sells a rejection at a pivot resistance."
    )
    min_bars = 2 * WING + 2 * RECENT + 20

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        atr = last_atr(s)
        if not finite(atr) or atr <= 0:
            return None
        side: Side
        if (found := find_bounce(s, atr)) is not None:
            side, bounce, word = "long", found, "bounced off support"
        elif (found := find_bounce(_mirror(s), atr)) is not None:
            side, word = "short", "was rejected at resistance"
            bounce = Bounce(-found.level, found.touches, -found.stop, -found.target)
        else:
            return None
        away = abs(float(s.close[-1]) - bounce.level) / atr
        signal = (
            f"{word} {price(bounce.level)} ({bounce.touches} pivot(s) there in {LOOKBACK} bars), "
            f"closing {away:.1f} ATR away"
        )
        score = squash(0.5 * bounce.touches + away, 2.0)
        return self.make(bars, side, score, (bounce.stop, bounce.target), signal)
