"""Statistical arbitrage: fade a symbol's move that the market factor does not explain.

The factor is the first principal component of the universe's standardised
returns; each symbol's residual is what is left after regressing on it.
"""

from __future__ import annotations

import math

import numpy as np

from oppscan.market.base import Bars, FloatArray, SeriesKey
from oppscan.strategies._common import (
    aligned_closes,
    exits,
    fetch,
    last_atr,
    ohlcv,
    opportunity,
    side_of,
    squash,
)
from oppscan.strategies.base import Opportunity, StrategyContext, StrategySkipped, Universe

LOOKBACK, MIN_LOOKBACK = 240, 100  # returns used to find the factor, and the least accepted
WINDOW = 10  # bars over which the residual move is measured
THRESHOLD = 2.5  # residual move, in its own standard deviations


def residual_moves(returns: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per symbol (row): the residual log move over the last WINDOW bars, and its z-score."""
    demeaned = returns - returns.mean(axis=1, keepdims=True)
    scale = demeaned.std(axis=1, keepdims=True)
    standard = np.divide(demeaned, scale, out=np.zeros_like(demeaned), where=scale > 0)
    factor = np.linalg.svd(standard, full_matrices=False)[2][0]  # unit norm, over time
    residual = demeaned - np.outer(demeaned @ factor, factor)
    move = residual[:, -WINDOW:].sum(axis=1)
    usual = residual.std(axis=1) * math.sqrt(WINDOW)
    return move, np.divide(move, usual, out=np.zeros_like(move), where=usual > 0)


class StatisticalArbitrage:
    name = "statistical_arbitrage"
    description = "Fades a 10-bar move that the universe's first principal factor does not explain."

    def needs(self, universe: Universe) -> list[SeriesKey]:
        return universe.primary_bars()

    def run(self, ctx: StrategyContext) -> list[Opportunity]:
        if len(ctx.symbols) < 3:
            raise StrategySkipped("statistical arbitrage needs at least 3 symbols")
        series = fetch(ctx, MIN_LOOKBACK + 1)
        closes = aligned_closes(series, LOOKBACK + 1, MIN_LOOKBACK + 1)
        if closes is None or len(series) < 3:
            raise StrategySkipped(f"fewer than 3 symbols share {MIN_LOOKBACK + 1} bars")
        moves, zs = residual_moves(np.diff(np.log(closes), axis=1))
        found = (
            self._trade(bars, move, z)
            for bars, move, z in zip(series, moves.tolist(), zs.tolist(), strict=True)
            if abs(z) >= THRESHOLD
        )
        return [o for o in found if o is not None]

    def _trade(self, bars: Bars, move: float, z: float) -> Opportunity | None:
        side, entry = side_of(-z), float(bars.close[-1])
        # Target: the residual move undone; stop: 1.5 ATR further along it.
        stop, _ = exits(entry, side, 1.5 * last_atr(ohlcv(bars)), 0.0)
        signal = f"{WINDOW}-bar move {move:+.1%} not explained by the market factor (z {z:+.1f})"
        score = squash(abs(z) - THRESHOLD, 1.0)
        return opportunity(bars, self.name, side, score, stop, entry * math.exp(-move), signal)

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"
