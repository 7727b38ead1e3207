"""Log-price paths by role, with each role's setup planted in its last bars.

Pure functions of (seed, universe size, symbol, timeframe), memoised: many
strategies read the same series, and a scan must not pay for it twice.
Volatility is in units of `sigma`, the symbol's per-bar volatility, so the same
setups appear at every timeframe.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from oppscan.market._universe import SymbolSpec, stable_rng, universe
from oppscan.market.base import FloatArray

BARS = 500
TF_SECONDS: dict[str, int] = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400}
_RAW = 720  # generated length; the last BARS are served (the `turn` role picks its window)
_YEAR = 365 * 86400
_FUNDING_PERIODS = 90  # 30 days of 8h periods


def base_sigma(timeframe: str) -> float:
    """Per-bar volatility of a typical coin (65% a year)."""
    return 0.65 * math.sqrt(TF_SECONDS[timeframe] / _YEAR)


@functools.lru_cache(maxsize=64)
def market_factor(seed: int, timeframe: str) -> FloatArray:
    rng = stable_rng(seed, timeframe, "factor")
    return np.cumsum(0.6 * base_sigma(timeframe) * rng.standard_normal(_RAW))


def _ou(rng: np.random.Generator, scale: float, theta: float, n: int = _RAW) -> FloatArray:
    shocks = scale * rng.standard_normal(n)
    out = np.empty(n)
    level = 0.0
    for i, shock in enumerate(shocks.tolist()):
        level = (1.0 - theta) * level + shock
        out[i] = level
    return out


def _walk(
    rng: np.random.Generator, sigma: float, spec: SymbolSpec, factor: FloatArray
) -> FloatArray:
    return np.cumsum(0.8 * sigma * rng.standard_normal(_RAW)) + spec.beta * factor


def _sma(x: FloatArray, n: int) -> FloatArray:
    c = np.cumsum(np.concatenate(([0.0], x)))
    out = np.full(x.shape[0], np.nan)
    out[n - 1 :] = (c[n:] - c[:-n]) / n
    return out


Builder = Callable[[np.random.Generator, float, SymbolSpec, FloatArray], FloatArray]


def _random(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    return _walk(rng, s, spec, f)


def _trend(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    start = _RAW - int(rng.integers(120, 250))
    age = np.clip(np.arange(_RAW) - start, 0, None)
    return _walk(rng, s, spec, f) + spec.direction * 0.25 * s * age


def _range(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    return _ou(rng, s, 0.06)


def _stretched(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    x = _range(rng, s, spec, f)
    calm = x[-23:-3]
    x[-3:] = calm.mean() + spec.direction * calm.std() * np.array([1.5, 3.0, 4.5])
    return x


def _rsi_extreme(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    x = _walk(rng, s, spec, f)
    slide = spec.direction * 1.5 * s * (1.0 + 0.2 * np.abs(rng.standard_normal(10)))
    x[-12:-2] = x[-13] + np.cumsum(slide)
    x[-2:] = x[-3] - spec.direction * 2.8 * s * np.array([1.0, 2.0])
    return x


def _breakout(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    x = _range(rng, s, spec, f)
    edge = x[-21:-1].max() if spec.direction > 0 else x[-21:-1].min()
    x[-1] = edge + spec.direction * 3.0 * s
    return x


def _volume_shock(
    rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray
) -> FloatArray:
    x = _walk(rng, s, spec, f)
    x[-1] = x[-2] + spec.direction * 3.0 * s
    return x


def _squeeze(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    x = _walk(rng, s, spec, f)
    x[-60:-3] = x[-61] + _ou(rng, 0.15 * s, 0.3, 57)
    x[-3:] = x[-4] + spec.direction * 2.5 * s * np.array([1.0, 2.0, 3.0])
    return x


def _residual(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    x = _walk(rng, s, spec, f)
    x[-10:] += spec.direction * 1.0 * s * np.arange(1, 11)
    return x


def _pivot_test(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    x = _range(rng, s, spec, f)
    d = spec.direction
    level = x[-110:-20].min() if d > 0 else x[-110:-20].max()
    floor = level + d * 1.0 * s  # the level held in between: a floor (or a ceiling)
    x[-20:-8] = np.maximum(x[-20:-8], floor) if d > 0 else np.minimum(x[-20:-8], floor)
    x[-8:-1] = np.linspace(x[-9], level - d * 0.2 * s, 8)[1:]  # wicks probe just past it
    x[-1] = x[-2] + d * 1.2 * s
    return x


def _turn(rng: np.random.Generator, s: float, spec: SymbolSpec, f: FloatArray) -> FloatArray:
    """A slide then a rally (or the reverse); the window ends a bar after the 20/50 SMA cross."""
    d, pivot, t = spec.direction, 600, np.arange(_RAW)
    slope = d * s * np.select([t < pivot - 100, t < pivot], [0.0, -0.3], 0.4)
    x = np.cumsum(0.6 * s * rng.standard_normal(_RAW) + slope)
    gap = d * (_sma(np.exp(x), 20) - _sma(np.exp(x), 50))
    crossed = np.flatnonzero((gap[pivot:] > 0) & (gap[pivot - 1 : -1] <= 0))
    end = pivot + int(crossed[0]) + 2 if crossed.size else _RAW
    return x[min(end, _RAW) - BARS : min(end, _RAW)]


_BUILDERS: dict[str, Builder] = {
    "random": _random,
    "pair_b": _random,
    "trend": _trend,
    "range": _range,
    "stretched": _stretched,
    "rsi_extreme": _rsi_extreme,
    "breakout": _breakout,
    "volume_shock": _volume_shock,
    "squeeze": _squeeze,
    "residual": _residual,
    "pivot_test": _pivot_test,
    "turn": _turn,
}


def _pair_leg(
    rng: np.random.Generator, s: float, spec: SymbolSpec, partner: FloatArray
) -> FloatArray:
    spread = _ou(rng, 0.5 * s, 0.15, BARS)
    target = spec.direction * 3.5 * spread[:-6].std()
    spread[-6:] = np.linspace(spread[-7], target, 7)[1:]
    return spec.hedge * partner + spread


@functools.lru_cache(maxsize=4096)
def log_path(seed: int, n_symbols: int, symbol: str, timeframe: str) -> FloatArray:
    """BARS log prices of `symbol` on its primary venue, starting at 0."""
    spec = universe(seed, n_symbols)[symbol]
    rng = stable_rng(seed, symbol, timeframe, "path")
    sigma = base_sigma(timeframe) * spec.vol
    if spec.role == "pair_a" and spec.partner is not None:
        x = _pair_leg(rng, sigma, spec, log_path(seed, n_symbols, spec.partner, timeframe))
    else:
        x = _BUILDERS[spec.role](rng, sigma, spec, market_factor(seed, timeframe))[-BARS:]
    path: FloatArray = x - x[0]
    path.flags.writeable = False
    return path


@functools.lru_cache(maxsize=4096)
def venue_basis(seed: int, n_symbols: int, symbol: str, timeframe: str, venue: str) -> FloatArray:
    """Price ratio of `venue` to the primary: a small, slowly wandering premium."""
    spec = universe(seed, n_symbols)[symbol]
    rng = stable_rng(seed, symbol, timeframe, venue, "basis")
    premium = float(rng.uniform(-4e-4, 4e-4))
    basis = 1.0 + premium + _ou(rng, 1e-4, 0.05, BARS)
    if spec.dislocation is not None and spec.dislocation[0] == venue:
        basis[-2:] *= 1.0 + spec.dislocation[1]
    basis.flags.writeable = False
    return basis


@functools.lru_cache(maxsize=1024)
def funding_series(seed: int, n_symbols: int, symbol: str) -> FloatArray:
    """Funding per 8h period, oldest first; a few symbols end crowded on one side."""
    spec = universe(seed, n_symbols)[symbol]
    rng = stable_rng(seed, symbol, "funding")
    rates = 1e-4 + _ou(rng, 4e-5, 0.2, _FUNDING_PERIODS)
    extreme = {"rich": 1.5e-3, "cheap": -1.2e-3}.get(spec.funding)
    if extreme is not None:
        rates[-6:] = np.linspace(rates[-7], extreme * float(rng.uniform(0.8, 1.3)), 7)[1:]
    rates.flags.writeable = False
    return rates
