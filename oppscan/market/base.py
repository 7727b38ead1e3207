"""The market-data interface that strategies read from.

A source hands out immutable OHLCV series per symbol, venue and timeframe. It
never caches per scan; callers that need a snapshot hold on to the `Bars`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")


class MarketDataError(Exception):
    """The source cannot serve what was asked (bad file, unknown symbol)."""


@dataclass(frozen=True, eq=False)
class Bars:
    """One OHLCV series, oldest bar first. `time` is unix seconds."""

    symbol: str
    venue: str
    timeframe: str
    time: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __len__(self) -> int:
        return int(self.close.shape[0])


class MarketData(Protocol):
    """What strategies may ask of a market."""

    @property
    def name(self) -> str: ...

    def symbols(self) -> Sequence[str]:
        """Every symbol this source can serve, sorted."""
        ...

    def venues(self) -> Sequence[str]:
        """Every venue, the primary one first."""
        ...

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        """Bars of `symbol` on `venue` (the primary one when None)."""
        ...

    def funding_rates(self, symbol: str) -> FloatArray | None:
        """Perpetual funding rate per 8h period, oldest first; None when not offered."""
        ...
