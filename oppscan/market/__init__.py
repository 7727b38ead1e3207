"""Market data: OHLCV series per symbol, venue and timeframe, and funding rates.

`load_market` turns the `OPPSCAN_MARKET` setting ("synthetic", "csv:DIR" or
"ccxt:EXCHANGE[,EXCHANGE...]") into a source.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oppscan.market.base import TIMEFRAMES, Bars, MarketData, MarketDataError, Throttle
from oppscan.market.csv_source import CsvMarket
from oppscan.market.synthetic import SyntheticMarket

__all__ = [
    "TIMEFRAMES",
    "Bars",
    "CcxtSetup",
    "CsvMarket",
    "MarketData",
    "MarketDataError",
    "SyntheticMarket",
    "load_market",
]


@dataclass(frozen=True)
class CcxtSetup:
    """What a ccxt market takes besides its exchanges (from the settings)."""

    symbols: Sequence[str] = ()  # empty: the top `universe_size` by quote volume
    universe_size: int = 60
    config: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    credentials: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)
    throttle: Throttle | None = None  # None: this process's own bucket
    on_rate_limited: Callable[[str], None] | None = None


def load_market(spec: str, latency_ms: float = 0.0, ccxt: CcxtSetup | None = None) -> MarketData:
    """The source a spec names: "synthetic", "csv:DIR" (one SYMBOL.csv per symbol), or
    "ccxt:EXCHANGE[,EXCHANGE...]" (ccxt exchange ids, each a venue, the first primary).

    Makes no request: a ccxt market loads its markets on first use.
    """
    if spec == "synthetic":
        return SyntheticMarket(latency_ms=latency_ms)
    kind, _, where = spec.partition(":")
    if kind == "csv" and where:
        return CsvMarket(Path(where), latency_ms=latency_ms)
    exchanges = [name.strip() for name in where.split(",") if name.strip()]
    if kind == "ccxt" and exchanges:
        # Imported here: ccxt takes half a second to import, which no other source
        # (nor a strategy child process) should pay.
        from oppscan.market.ccxt_source import CcxtMarket

        setup = ccxt or CcxtSetup()
        return CcxtMarket(
            exchanges=exchanges,
            symbols=tuple(setup.symbols) or None,
            universe_size=setup.universe_size,
            config=setup.config,
            credentials=setup.credentials,
            throttle=setup.throttle,
            on_rate_limited=setup.on_rate_limited,
        )
    raise ValueError(
        f"unknown market {spec!r}: expected 'synthetic', 'csv:DIRECTORY' "
        "or 'ccxt:EXCHANGE[,EXCHANGE...]'"
    )
