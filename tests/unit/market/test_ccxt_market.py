"""The ccxt market's pure parts and its checks at construction: no request is made."""

from __future__ import annotations

from typing import Any

import ccxt
import pytest

from oppscan.market.base import MarketDataError, SeriesKey, candle_freshness
from oppscan.market.ccxt_source import (
    DEFAULT_PAGE,
    CcxtMarket,
    RetryBudget,
    page_limit,
    perpetual_of,
    retry_after_seconds,
    top_by_volume,
)

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"RETRY-AFTER": "-3"}, 0.0),
        ({"Retry-After": "Thu, 01 Jan 2026 00:00:30 GMT"}, 30.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Content-Type": "application/json"}, None),
        (None, None),
    ],
)
def test_reads_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    """Delta-seconds or an HTTP date, any case; never negative; None when absent or garbled."""
    assert expected == retry_after_seconds(headers, NOW)


def market(symbol: str, **fields: Any) -> dict[str, Any]:
    return {"symbol": symbol, "spot": True, "active": True, **fields}


def test_top_by_volume_ranks_active_spot_markets() -> None:
    """Largest quote volume first, ties by symbol; inactive, non-spot and volumeless left out."""
    markets = {
        m["symbol"]: m
        for m in (
            market("A/USDT"),
            market("B/USDT"),
            market("C/USDT"),
            market("D/USDT", active=False),
            market("E/USDT:USDT", spot=False),
            market("F/USDT"),
        )
    }
    tickers = {
        "A/USDT": {"quoteVolume": 10.0},
        "B/USDT": {"quoteVolume": 30.0},
        "C/USDT": {"quoteVolume": 10.0},
        "D/USDT": {"quoteVolume": 99.0},
        "E/USDT:USDT": {"quoteVolume": 99.0},
        "F/USDT": {"quoteVolume": None},
        "G/USDT": {"quoteVolume": 50.0},  # no such market
    }
    assert ["B/USDT", "A/USDT", "C/USDT"] == top_by_volume(markets, tickers, 5)
    assert ["B/USDT", "A/USDT"] == top_by_volume(markets, tickers, 2)


def test_the_perpetual_is_the_linear_swap_settled_in_the_quote() -> None:
    """BTC/USDT's perpetual is BTC/USDT:USDT; a dated future or an inverse swap is not."""
    markets = {
        "BTC/USDT:USDT": market("BTC/USDT:USDT", spot=False, swap=True, linear=True),
        "ETH/USDT:USDT-250328": market("ETH/USDT:USDT-250328", spot=False, future=True),
        "XRP/USD:USD": market("XRP/USD:USD", spot=False, swap=True, linear=False),
    }
    assert "BTC/USDT:USDT" == perpetual_of(markets, "BTC/USDT")
    assert None is perpetual_of(markets, "ETH/USDT")
    assert None is perpetual_of(markets, "XRP/USD")
    assert None is perpetual_of(markets, "BTCUSDT")


def test_page_limit_comes_from_ccxt_features() -> None:
    """Binance: 1000 spot bars a request, 500 on linear swaps; unknown: the default."""
    exchange = ccxt.binance()
    assert 1000 == page_limit(exchange, {"type": "spot"})
    assert 500 == page_limit(exchange, {"type": "swap", "subType": "linear"})
    assert DEFAULT_PAGE == page_limit(exchange, {"type": "option-of-a-kind"})


def test_an_unknown_exchange_is_refused() -> None:
    """An id ccxt does not know fails at construction, naming it."""
    with pytest.raises(MarketDataError, match="'nosuchx'"):
        CcxtMarket(exchanges=["nosuchx"])


def test_an_exchange_without_candles_is_refused() -> None:
    """bit2c has no fetchOHLCV in ccxt: refused at construction."""
    with pytest.raises(MarketDataError, match=r"bit2c.*fetchOHLCV"):
        CcxtMarket(exchanges=["bit2c"], symbols=["BTC/NIS"])


def test_a_universe_needs_tickers_unless_symbols_are_named() -> None:
    """bitbank has no fetchTickers: a top-N universe is refused, named symbols are fine."""
    with pytest.raises(MarketDataError, match="bitbank has no fetchTickers"):
        CcxtMarket(exchanges=["bitbank"])
    assert ("bitbank",) == CcxtMarket(exchanges=["bitbank"], symbols=["BTC/JPY"]).venues()


def test_repeated_exchanges_are_refused() -> None:
    """Each venue once."""
    with pytest.raises(ValueError, match="distinct"):
        CcxtMarket(exchanges=["binance", "binance"])


def test_names_its_exchanges() -> None:
    """The name lists the venues, primary first; venues() is the same list."""
    source = CcxtMarket(exchanges=["binance", "kraken"])
    assert "ccxt:binance,kraken" == source.name
    assert ("binance", "kraken") == tuple(source.venues())


def test_a_copy_is_fresh_until_its_candle_closes() -> None:
    """Freshness is the candle's: tagged by its open, good until it closes."""
    key = SeriesKey.bars("binance", "BTC/USDT", "1h")
    assert candle_freshness("1h", NOW + 60) == CcxtMarket(exchanges=["binance"]).freshness(
        key, NOW + 60
    )


def test_unknown_timeframes_and_venues_are_refused_before_any_request() -> None:
    """A timeframe oppscan does not know, or a venue not configured: MarketDataError."""
    source = CcxtMarket(exchanges=["binance"], config={"binance": {"urls": {"api": {}}}})
    with pytest.raises(MarketDataError, match="unknown timeframe '3m'"):
        source.bars("BTC/USDT", "3m")
    with pytest.raises(MarketDataError, match="unknown venue 'kraken'"):
        source.bars("BTC/USDT", "1h", venue="kraken")


def test_credentials_stay_out_of_repr() -> None:
    """repr names exchanges and sizes, never a key or secret."""
    source = CcxtMarket(
        exchanges=["binance"],
        credentials={"binance": {"apiKey": "key-1234", "secret": "secret-5678"}},
    )
    shown = repr(source)
    assert "binance" in shown
    assert "key-1234" not in shown
    assert "secret-5678" not in shown


def test_a_retry_budget_needs_an_attempt() -> None:
    """Zero attempts would never send the request: refused."""
    with pytest.raises(ValueError, match="attempt"):
        RetryBudget(attempts=0)
