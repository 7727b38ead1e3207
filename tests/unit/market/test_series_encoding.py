"""The binary form of a series in the shared cache: exact round trips, compact, and
bytes that are not a series are refused, never guessed at."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from oppscan.market import SyntheticMarket
from oppscan.market.base import Bars, MarketDataError, SeriesKey
from oppscan.market.encoding import decode, encode

BARS = SeriesKey.bars("alpha", "BTC-USD", "1h")
FUNDING = SeriesKey.funding("alpha", "BTC-USD")


def test_bars_round_trip_exactly() -> None:
    """Every column comes back bit for bit, read-only like the source's."""
    bars = SyntheticMarket().bars("BTC-USD", "1h")
    back = decode(BARS, encode(bars))
    assert isinstance(back, Bars)
    for column in ("time", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(bars, column), getattr(back, column)), column
        assert not getattr(back, column).flags.writeable
    assert (bars.symbol, bars.venue, bars.timeframe) == (back.symbol, back.venue, back.timeframe)


def test_funding_rates_round_trip_and_an_empty_series_stays_empty() -> None:
    """Rates come back exactly; "not offered" (empty) comes back empty."""
    rates = SyntheticMarket().funding_rates("BTC-USD")
    assert rates is not None
    assert np.array_equal(rates, decode(FUNDING, encode(rates)))  # type: ignore[arg-type]
    assert 0 == len(decode(FUNDING, encode(np.zeros(0))))  # type: ignore[arg-type]


def test_a_series_costs_under_its_raw_size() -> None:
    """500 bars are 24,000 bytes of numbers; the timestamps cost next to nothing."""
    bars = SyntheticMarket().bars("BTC-USD", "1h")
    assert len(encode(bars)) < 6 * 8 * len(bars)


@pytest.mark.parametrize(
    "data",
    [b"not zlib", zlib.compress(b"OS"), zlib.compress(b"XX\x01\x00\x05\x00\x00\x00")],
)
def test_bytes_that_are_not_a_series_are_refused(data: bytes) -> None:
    """Garbage, a short header or a foreign magic: MarketDataError naming the series."""
    with pytest.raises(MarketDataError, match="BTC-USD 1h bars on alpha"):
        decode(BARS, data)


def test_a_kind_mismatch_is_refused() -> None:
    """Funding bytes under a bars key are another format."""
    with pytest.raises(MarketDataError, match="another format"):
        decode(BARS, encode(np.ones(3)))


def test_truncated_bytes_are_refused() -> None:
    """A copy cut short is refused rather than read past its end."""
    raw = zlib.decompress(encode(SyntheticMarket().bars("BTC-USD", "1h")))
    with pytest.raises(MarketDataError, match="truncated"):
        decode(BARS, zlib.compress(raw[:-8]))
