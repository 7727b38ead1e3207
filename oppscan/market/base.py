"""The market-data interface that strategies read from.

A source hands out immutable OHLCV series per symbol, venue and timeframe. It
never caches per scan; callers that need a snapshot hold on to the `Bars`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

TIMEFRAMES: tuple[str, ...] = ("1m", "5m", "15m", "1h", "4h", "1d")
TIMEFRAME_SECONDS: dict[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "1h": 3600,
    "4h": 14400,
    "1d": 86400,
    "8h": 28800,
}
FUNDING_PERIOD = "8h"  # perpetual funding is settled every 8 hours
HISTORY_BARS = 500  # bars a source serves per series: enough for every built-in strategy

SeriesKind = Literal["bars", "funding"]


class MarketDataError(Exception):
    """The source cannot serve what was asked (bad file, unknown symbol, an exchange
    that errors). The message names the source."""


class RateLimited(MarketDataError):
    """The exchange refused for now (HTTP 429/418); `retry_after` seconds, if it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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


@dataclass(frozen=True, order=True)
class SeriesKey:
    """One series a strategy reads: bars of a symbol on a venue at a timeframe, or
    its funding rates (timeframe `FUNDING_PERIOD`)."""

    kind: SeriesKind
    venue: str
    symbol: str
    timeframe: str

    @classmethod
    def bars(cls, venue: str, symbol: str, timeframe: str) -> SeriesKey:
        return cls("bars", venue, symbol, timeframe)

    @classmethod
    def funding(cls, venue: str, symbol: str) -> SeriesKey:
        return cls("funding", venue, symbol, FUNDING_PERIOD)

    def __str__(self) -> str:
        what = f"{self.timeframe} bars" if self.kind == "bars" else "funding"
        return f"{self.symbol} {what} on {self.venue}"


@dataclass(frozen=True)
class Freshness:
    """How long a fetched series stays good: `tag` names the version (the candle it
    was fetched in, a file's state), valid for `ttl` more seconds."""

    tag: str
    ttl: float


def candle_freshness(timeframe: str, now: float) -> Freshness:
    """Good until the candle open at `now` closes: the next fetch would add a bar."""
    step = TIMEFRAME_SECONDS[timeframe]
    opened = math.floor(now / step) * step
    return Freshness(str(int(opened)), max(0.001, opened + step - now))


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
        """Perpetual funding rate per 8h period on the primary venue, oldest first;
        None when not offered."""
        ...

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        """Until when a copy of `key` fetched at `now` may be served to scans."""
        ...


class Throttle(Protocol):
    """An exchange's rate limit, held across every worker of a deployment."""

    def take(self, venue: str, cost: float, per_second: float, burst: float) -> float:
        """Take `cost` tokens from `venue`'s bucket (refilled at `per_second`, holding at
        most `burst`): the seconds to wait before sending (0.0: send now). A negative
        cost gives tokens back (a request that was not sent after all)."""
        ...

    def hold_off(self, venue: str, seconds: float) -> None:
        """`venue` asked for a pause (a 429's Retry-After): no worker sends to it for
        `seconds`."""
        ...
