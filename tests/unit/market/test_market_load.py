"""Choosing a market from its spec string."""

from __future__ import annotations

from pathlib import Path

import pytest

from oppscan.market import (
    CcxtSetup,
    CsvMarket,
    MarketDataError,
    SyntheticMarket,
    load_market,
)
from oppscan.market.ccxt_source import CcxtMarket


def test_synthetic_spec_gives_the_synthetic_market() -> None:
    """'synthetic' is the default seeded market."""
    market = load_market("synthetic")
    assert isinstance(market, SyntheticMarket)
    assert "synthetic" == market.name


def test_csv_spec_gives_a_csv_market_on_that_directory(tmp_path: Path) -> None:
    """'csv:DIR' reads that directory."""
    market = load_market(f"csv:{tmp_path}")
    assert isinstance(market, CsvMarket)
    assert f"csv:{tmp_path}" == market.name


def test_ccxt_spec_gives_one_venue_per_exchange_without_a_request() -> None:
    """'ccxt:A,B' makes a ccxt market of those exchanges, primary first; nothing is
    fetched until a scan asks (no network here, and none needed)."""
    market = load_market("ccxt:binance, binanceus", ccxt=CcxtSetup(symbols=("BTC/USDT",)))
    assert isinstance(market, CcxtMarket)
    assert ("ccxt:binance,binanceus", ("binance", "binanceus")) == (
        market.name,
        tuple(market.venues()),
    )


def test_an_unknown_exchange_is_refused() -> None:
    """An id ccxt does not know is a MarketDataError naming it."""
    with pytest.raises(MarketDataError, match="nosuchexchange"):
        load_market("ccxt:nosuchexchange")


@pytest.mark.parametrize("spec", ["", "yahoo", "csv:", "csv", "synthetic:3", "ccxt:", "ccxt:,"])
def test_other_specs_are_refused(spec: str) -> None:
    """Anything else is a ValueError that says what is accepted."""
    with pytest.raises(ValueError, match="expected 'synthetic', 'csv:DIRECTORY' or 'ccxt:"):
        load_market(spec)
