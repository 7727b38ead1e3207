"""Pairs trading: a cointegrated pair whose spread is stretched.

Hedge ratio by OLS of log prices, an Engle-Granger style check that the spread
mean-reverts, then both legs of the trade when the spread's z-score is extreme.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from oppscan.market.base import Bars, FloatArray, SeriesKey
from oppscan.strategies._common import aligned_closes, fetch, opportunity, side_of, squash
from oppscan.strategies.base import Opportunity, StrategyContext, StrategySkipped, Universe

LOOKBACK, MIN_LOOKBACK = 300, 120  # bars of shared history used, and the least accepted
MIN_CORRELATION = 0.8
MAX_ADF_T = -3.5  # t-statistic of the spread's mean reversion (Engle-Granger, ~2.5%)
THRESHOLD = 2.0  # spread z-score
STOP_SIGMAS = 1.5  # give the spread this much more room before calling it broken


@dataclass(frozen=True)
class Spread:
    beta: float
    value: float  # last residual (log)
    sigma: float
    adf_t: float
    half_life: float

    @property
    def z(self) -> float:
        return self.value / self.sigma


def fit_spread(y: FloatArray, x: FloatArray) -> Spread | None:
    """OLS of log y on log x, and how fast the residual spread mean-reverts."""
    xc, yc = x - x.mean(), y - y.mean()
    beta = float(xc @ yc / (xc @ xc)) if xc @ xc > 0 else math.nan
    spread = yc - beta * xc
    lagged, step = spread[:-1], np.diff(spread)
    denominator = float(lagged @ lagged)
    if not math.isfinite(beta) or beta <= 0.1 or denominator <= 0:
        return None
    b = float(lagged @ step) / denominator
    noise = step - b * lagged
    se = math.sqrt(float(noise @ noise) / (len(step) - 1) / denominator)
    sigma = float(spread.std())
    if se <= 0 or sigma <= 0 or not -1.0 < b < 0.0:
        return None
    return Spread(beta, float(spread[-1]), sigma, b / se, -math.log(2.0) / math.log1p(b))


def _legs(name: str, a: Bars, b: Bars, fit: Spread) -> list[Opportunity]:
    """Sell the rich leg, buy the cheap one. Targets: the spread back at its mean;
    stops: the spread STOP_SIGMAS wider. Each leg priced as if it moved alone."""
    d, room = fit.value, STOP_SIGMAS * fit.sigma
    sign = 1.0 if d > 0 else -1.0
    ea, eb = float(a.close[-1]), float(b.close[-1])
    rich, cheap = (a.symbol, b.symbol) if d > 0 else (b.symbol, a.symbol)
    signal = (
        f"spread of {a.symbol} against {fit.beta:.2f}x {b.symbol} at z {fit.z:+.1f} "
        f"(half-life {fit.half_life:.0f} bars): sell {rich}, buy {cheap}"
    )
    score = squash(abs(fit.z) - THRESHOLD, 1.0)
    a_exits = (ea * math.exp(sign * room), ea * math.exp(-d))
    b_exits = (eb * math.exp(-sign * room / fit.beta), eb * math.exp(d / fit.beta))
    legs = (
        opportunity(a, name, side_of(-d), score, *a_exits, signal),
        opportunity(b, name, side_of(d), score, *b_exits, signal),
    )
    return [leg for leg in legs if leg is not None]


class PairsTrading:
    name = "pairs_trading"
    description = (
        "Trades both legs of a cointegrated pair (OLS hedge ratio) when its spread is stretched."
    )

    def needs(self, universe: Universe) -> list[SeriesKey]:
        return universe.primary_bars()

    def run(self, ctx: StrategyContext) -> list[Opportunity]:
        if len(ctx.symbols) < 2:
            raise StrategySkipped("pairs trading needs at least 2 symbols")
        series = fetch(ctx, MIN_LOOKBACK)
        closes = aligned_closes(series, LOOKBACK, MIN_LOOKBACK)
        if closes is None or len(series) < 2:
            raise StrategySkipped(f"fewer than 2 symbols share {MIN_LOOKBACK} bars")
        logs = np.log(closes)
        with np.errstate(invalid="ignore", divide="ignore"):
            correlation = np.corrcoef(logs)
        found: list[Opportunity] = []
        for i, j in zip(*np.nonzero(np.triu(correlation >= MIN_CORRELATION, k=1)), strict=True):
            fit = fit_spread(logs[i], logs[j])
            if fit is None or fit.adf_t > MAX_ADF_T or abs(fit.z) < THRESHOLD:
                continue
            found += _legs(self.name, series[i], series[j], fit)
        return found

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"
