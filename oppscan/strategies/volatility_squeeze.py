"""Volatility squeeze: Bollinger bands inside the Keltner channel, then released."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import talib

from oppscan.market.base import Bars, FloatArray
from oppscan.strategies._common import (
    Ohlcv,
    PerSymbol,
    exits,
    f64,
    finite,
    last_atr,
    ohlcv,
    side_of,
    squash,
)
from oppscan.strategies.base import Opportunity

PERIOD, KELTNER_ATR = 20, 1.5
MIN_SQUEEZE = 6  # bars the squeeze must have lasted
RECENT = 3  # the release happened within this many bars


def squeeze_on(s: Ohlcv) -> npt.NDArray[np.bool_]:
    """Per bar: are both Bollinger bands inside the Keltner channel?"""
    upper, _, lower = talib.BBANDS(s.close, PERIOD, 2.0, 2.0)
    middle = talib.EMA(s.close, PERIOD)
    width = KELTNER_ATR * talib.ATR(s.high, s.low, s.close, PERIOD)
    with np.errstate(invalid="ignore"):
        return np.asarray((upper < middle + width) & (lower > middle - width))


def squeeze_length(on: npt.NDArray[np.bool_]) -> int:
    """Bars the squeeze lasted, if it was released within RECENT bars and is still off."""
    n = len(on)
    released = [i for i in range(n - RECENT, n) if on[i - 1] and not on[i]]
    if not released or on[-1]:
        return 0
    off_before = np.flatnonzero(~on[: released[-1]])
    return released[-1] - (int(off_before[-1]) + 1 if off_before.size else 0)


def momentum(s: Ohlcv) -> float:
    """TTM-style: the close against the mean of the Donchian midline and the SMA."""
    donchian = (talib.MAX(s.high, PERIOD) + talib.MIN(s.low, PERIOD)) / 2
    baseline: FloatArray = (donchian + talib.SMA(s.close, PERIOD)) / 2
    return float(talib.LINEARREG(f64(s.close - baseline), PERIOD)[-1])


class VolatilitySqueeze(PerSymbol):
    name = "volatility_squeeze"
    description = "Trades the release of a Bollinger-inside-Keltner squeeze, with its momentum."

    def evaluate(self, bars: Bars) -> Opportunity | None:
        s = ohlcv(bars)
        length = squeeze_length(squeeze_on(s))
        push = momentum(s)
        if length < MIN_SQUEEZE or not finite(push) or push == 0:
            return None
        side = side_of(push)
        way = "up" if side == "long" else "down"
        signal = (
            f"Bollinger bands left the Keltner channel after a {length}-bar squeeze, momentum {way}"
        )
        atr = last_atr(s)
        found = exits(float(s.close[-1]), side, 1.5 * atr, 3.0 * atr)
        return self.make(bars, side, squash(length / MIN_SQUEEZE, 2.0), found, signal)
