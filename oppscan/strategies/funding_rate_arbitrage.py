"""Funding-rate arbitrage: collect extreme perpetual funding, hedged with spot.

Positive funding (longs pay) means short the perpetual and buy spot; negative
funding, the reverse. The side is the perpetual's. Target and stop are the
carry expressed as a price move: three days of funding at the current rate,
against the rate flipping for a day, plus fees.
"""

from __future__ import annotations

import numpy as np

from oppscan.market.base import Bars, SeriesKey
from oppscan.strategies._common import exits, opportunity, side_of, squash
from oppscan.strategies.base import Opportunity, StrategyContext, StrategySkipped, Universe

THRESHOLD = 5e-4  # per 8h period: 0.05%, about 55% a year
HORIZON = 9  # periods of carry aimed for (three days)
ADVERSE = 3  # periods of the rate flipping that the stop allows for
FEES = 1e-3  # round trip, both legs
PERIODS_A_YEAR = 3 * 365


class FundingRateArbitrage:
    name = "funding_rate_arbitrage"
    description = "Collects extreme funding: short perp / long spot when longs pay, or the reverse."

    def needs(self, universe: Universe) -> list[SeriesKey]:
        """Funding of every symbol, and its bars to price the trade."""
        funding = [SeriesKey.funding(universe.venues[0], s) for s in universe.symbols]
        return funding + universe.primary_bars()

    def run(self, ctx: StrategyContext) -> list[Opportunity]:
        rates = {symbol: ctx.market.funding_rates(symbol) for symbol in ctx.symbols}
        if all(r is None for r in rates.values()):
            raise StrategySkipped("market offers no funding rates")
        found: list[Opportunity] = []
        for symbol, series in rates.items():
            current = float(np.mean(series[-3:])) if series is not None and len(series) else 0.0
            if np.isfinite(current) and abs(current) >= THRESHOLD:
                trade = self._trade(ctx.market.bars(symbol, ctx.timeframe), current)
                found += [trade] if trade is not None else []
        return found

    def _trade(self, bars: Bars, rate: float) -> Opportunity | None:
        side = side_of(-rate)  # be on the side that is paid
        entry = float(bars.close[-1])
        stop, target = exits(
            entry, side, entry * (abs(rate) * ADVERSE + FEES), entry * abs(rate) * HORIZON
        )
        legs = "short perp, long spot" if side == "short" else "long perp, short spot"
        signal = f"funding {rate:+.3%} per 8h ({rate * PERIODS_A_YEAR:+.0%} a year): {legs}"
        score = squash(abs(rate) / THRESHOLD - 1.0, 1.5)
        return opportunity(bars, self.name, side, score, stop, target, signal)

    def __repr__(self) -> str:
        return f"<strategy {self.name}>"
