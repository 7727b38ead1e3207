"""A deterministic, seeded market for development, tests and load tests.

Sixty-odd coins on three venues, with funding rates, in a mix of regimes
(trends, ranges, cointegrated pairs) and with setups planted in the last bars
(breakouts, squeezes, oversold bounces, venue dislocations, crowded funding), so
that every built-in strategy has something to find. Series are memoised per
process; `latency_ms` models a slow exchange API on every call.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

from oppscan.market._paths import (
    BARS,
    TF_SECONDS,
    base_sigma,
    funding_series,
    log_path,
    market_factor,
    venue_basis,
)
from oppscan.market._universe import VENUES, stable_rng, universe
from oppscan.market.base import (
    TIMEFRAMES,
    Bars,
    FloatArray,
    Freshness,
    MarketDataError,
    SeriesKey,
    candle_freshness,
)

END_TIME = 1_767_225_600  # 2026-01-01T00:00:00Z, the close of the last bar
_VENUE_SHARE = {"alpha": 1.0, "beta": 0.6, "gamma": 0.35}
_Array = TypeVar("_Array", bound="np.ndarray[Any, Any]")


def _frozen(values: _Array) -> _Array:
    """Cached series are shared by every caller: make them read-only."""
    values.flags.writeable = False
    return values


@functools.lru_cache(maxsize=1024)
def primary_bars(seed: int, n_symbols: int, symbol: str, timeframe: str) -> Bars:
    """OHLCV around the symbol's log path: opens near the last close, random wicks, and
    volume that grows with the size of the move (planted shocks trade heavier)."""
    spec = universe(seed, n_symbols)[symbol]
    x = log_path(seed, n_symbols, symbol, timeframe)
    sigma = base_sigma(timeframe) * spec.vol
    rng = stable_rng(seed, symbol, timeframe, "bars")
    close = spec.price * np.exp(x)
    prev = np.concatenate(([close[0] * np.exp(0.1 * sigma * rng.standard_normal())], close[:-1]))
    open_ = prev * np.exp(0.05 * sigma * rng.standard_normal(BARS))
    wick = 0.35 * sigma * np.abs(rng.standard_normal((2, BARS)))
    move = np.abs(np.diff(x, prepend=x[0])) / sigma
    volume = spec.volume * np.exp(0.25 * rng.standard_normal(BARS)) * (1.0 + 0.6 * move)
    if spec.role in ("breakout", "volume_shock"):
        volume[-1] *= 4.0
    step = TF_SECONDS[timeframe]
    return Bars(
        symbol=symbol,
        venue=VENUES[0],
        timeframe=timeframe,
        time=_frozen(END_TIME - step * np.arange(BARS - 1, -1, -1, dtype=np.int64)),
        open=_frozen(open_),
        high=_frozen(np.maximum(open_, close) * np.exp(wick[0])),
        low=_frozen(np.minimum(open_, close) * np.exp(-wick[1])),
        close=_frozen(close),
        volume=_frozen(volume),
    )


@functools.lru_cache(maxsize=2048)
def venue_bars(seed: int, n_symbols: int, symbol: str, timeframe: str, venue: str) -> Bars:
    """The primary's bars times the venue's basis; volume scaled to the venue's share."""
    primary = primary_bars(seed, n_symbols, symbol, timeframe)
    if venue == VENUES[0]:
        return primary
    basis = venue_basis(seed, n_symbols, symbol, timeframe, venue)
    return Bars(
        symbol=symbol,
        venue=venue,
        timeframe=timeframe,
        time=primary.time,
        open=_frozen(primary.open * basis),
        high=_frozen(primary.high * basis),
        low=_frozen(primary.low * basis),
        close=_frozen(primary.close * basis),
        volume=_frozen(primary.volume * _VENUE_SHARE[venue]),
    )


class SyntheticMarket:
    """A seeded universe of `n_symbols` coins on three venues (see the module doc)."""

    def __init__(self, seed: int = 7, n_symbols: int = 60, latency_ms: float = 0.0) -> None:
        if n_symbols < 1:
            raise ValueError(f"n_symbols must be at least 1, got {n_symbols}")
        self._seed = seed
        self._n_symbols = n_symbols
        self._latency_s = max(0.0, latency_ms) / 1000.0
        self._symbols = tuple(sorted(universe(seed, n_symbols)))

    @property
    def name(self) -> str:
        return "synthetic"

    def symbols(self) -> Sequence[str]:
        return self._symbols

    def venues(self) -> Sequence[str]:
        return VENUES

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        self._check_symbol(symbol)
        if timeframe not in TIMEFRAMES:
            raise MarketDataError(
                f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}"
            )
        venue = VENUES[0] if venue is None else venue
        if venue not in VENUES:
            raise MarketDataError(f"unknown venue {venue!r}; expected one of {', '.join(VENUES)}")
        found = venue_bars(self._seed, self._n_symbols, symbol, timeframe, venue)
        self._pause()
        return found

    def funding_rates(self, symbol: str) -> FloatArray | None:
        self._check_symbol(symbol)
        found = funding_series(self._seed, self._n_symbols, symbol)
        self._pause()
        return found

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        """As an exchange's: a copy is good until the current candle closes."""
        return candle_freshness(key.timeframe, now)

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in universe(self._seed, self._n_symbols):
            raise MarketDataError(f"unknown symbol {symbol!r} in the synthetic market")

    def _pause(self) -> None:
        if self._latency_s > 0:
            time.sleep(self._latency_s)

    def __repr__(self) -> str:
        return f"SyntheticMarket(seed={self._seed}, n_symbols={self._n_symbols})"


def clear_caches() -> None:
    """Forget every generated series (tests use it to show the output is pure)."""
    for cached in (venue_bars, primary_bars, log_path, venue_basis, funding_series, market_factor):
        cached.cache_clear()
    universe.cache_clear()
