"""Market data: OHLCV series per symbol, venue and timeframe, and funding rates.

`load_market` turns the `OPPSCAN_MARKET` setting ("synthetic" or "csv:DIR") into
a source.
"""

from pathlib import Path

from oppscan.market.base import TIMEFRAMES, Bars, MarketData, MarketDataError
from oppscan.market.csv_source import CsvMarket
from oppscan.market.synthetic import SyntheticMarket

__all__ = [
    "TIMEFRAMES",
    "Bars",
    "CsvMarket",
    "MarketData",
    "MarketDataError",
    "SyntheticMarket",
    "load_market",
]


def load_market(spec: str, latency_ms: float = 0.0) -> MarketData:
    """The source a spec names: "synthetic", or "csv:DIR" (one SYMBOL.csv per symbol)."""
    if spec == "synthetic":
        return SyntheticMarket(latency_ms=latency_ms)
    kind, _, where = spec.partition(":")
    if kind == "csv" and where:
        return CsvMarket(Path(where), latency_ms=latency_ms)
    raise ValueError(f"unknown market {spec!r}: expected 'synthetic' or 'csv:DIRECTORY'")
