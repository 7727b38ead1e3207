"""Cross-venue arbitrage: one symbol priced out of line between two venues.

The opportunity is priced on the primary venue: when another venue is rich, buy
on the primary and sell there (long); when it is cheap, the reverse (short). The
convergence is the target, and the gap widening by half again is the stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from oppscan.market.base import Bars, SeriesKey
from oppscan.strategies._common import MIN_BARS, aligned_closes, exits, opportunity, side_of, squash
from oppscan.strategies.base import Opportunity, StrategyContext, StrategySkipped, Universe

HISTORY = 200  # bars of the usual premium between venues
MIN_GAP = 0.0025  # 25 bp beyond the usual premium: clears fees on both legs
MIN_Z = 4.0


@dataclass(frozen=True)
class Gap:
    venue: str
    excess: float  # venue price / primary price, over the usual ratio, minus one
    usual: float  # the usual premium (ratio minus one)
    z: float


def measure_gap(primary: Bars, other: Bars) -> Gap | None:
    closes = aligned_closes([primary, other], min(HISTORY, len(primary), len(other)))
    if closes is None or closes.shape[1] < MIN_BARS:
        return None
    ratio = closes[1] / closes[0]
    usual, spread = float(ratio[:-1].mean()), float(ratio[:-1].std())
    if not spread > 0 or not np.isfinite(ratio[-1]):
        return None
    return Gap(
        other.venue,
        float(ratio[-1] / usual - 1.0),
        usual - 1.0,
        float((ratio[-1] - usual) / spread),
    )


class CrossVenueArbitrage:
    name = "cross_venue_arbitrage"
    description = (
        "Buys the cheap venue and sells the rich one when a symbol's venues disagree beyond fees."
    )

    def needs(self, universe: Universe) -> list[SeriesKey]:
        """Every symbol's bars on every venue (nothing when there is one: it skips)."""
        if len(universe.venues) < 2:
            return []
        tf = universe.timeframe
        return [SeriesKey.bars(v, s, tf) for s in universe.symbols for v in universe.venues]

    def run(self, ctx: StrategyContext) -> list[Opportunity]:
        venues = list(ctx.market.venues())
        if len(venues) < 2:
            raise StrategySkipped("market offers one venue")
        found: list[Opportunity] = []
        for symbol in ctx.symbols:
            primary = ctx.market.bars(symbol, ctx.timeframe, venues[0])
            gaps = [
                measure_gap(primary, ctx.market.bars(symbol, ctx.timeframe, v)) for v in venues[1:]
            ]
            best = max(
                (g for g in gaps if g is not None), key=lambda g: abs(g.excess), default=None
            )
            if best is not None and abs(best.excess) >= MIN_GAP and abs(best.z) >= MIN_Z:
                trade = self._trade(primary, best)
                found += [trade] if trade is not None else []
        return found

    def _trade(self, primary: Bars, gap: Gap) -> Opportunity | None:
        side, entry, size = side_of(gap.excess), float(primary.close[-1]), abs(gap.excess)
        stop, target = exits(entry, side, entry * size / 2, entry * size)
        cheap, rich = (primary.venue, gap.venue) if side == "long" else (gap.venue, primary.venue)
        signal = (
            f"{primary.symbol} on {gap.venue} is {gap.excess:+.2%} against {primary.venue} "
            f"beyond its usual {gap.usual:+.3%} (z {gap.z:+.0f}): buy on {cheap}, sell on {rich}"
        )
        score = squash(size / MIN_GAP - 1.0, 2.0)
        return opportunity(primary, self.name, side, score, stop, target, signal)

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"
