"""The CSV market: Yahoo-style files in a directory, read lazily, checked strictly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from oppscan.market import CsvMarket, MarketDataError
from oppscan.market.base import SeriesKey

YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,100.0,105.0,99.0,104.0,103.1,1200
2024-01-03,104.0,106.0,101.0,102.5,101.6,900
2024-01-04,102.5,103.0,98.5,99.0,98.1,1500
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def test_reads_a_yahoo_export(tmp_path: Path) -> None:
    """Date/OHLC/Adj Close/Volume: the bars, with Adj Close ignored and dates as UTC midnight."""
    write(tmp_path, "AAPL.csv", YAHOO)
    bars = CsvMarket(tmp_path).bars("AAPL", "1d")
    np.testing.assert_array_equal([104.0, 102.5, 99.0], bars.close)
    np.testing.assert_array_equal([105.0, 106.0, 103.0], bars.high)
    np.testing.assert_array_equal([1200.0, 900.0, 1500.0], bars.volume)
    assert [1704153600, 1704240000, 1704326400] == bars.time.tolist()
    assert ("AAPL", "csv", "1d") == (bars.symbol, bars.venue, bars.timeframe)


def test_reads_an_unnamed_first_column_as_the_date(tmp_path: Path) -> None:
    """A pandas export (unnamed index column, lower-case names) reads the same."""
    text = YAHOO.replace(
        "Date,Open,High,Low,Close,Adj Close,Volume", ",open,HIGH,low,close,adj close,volume"
    )
    write(tmp_path, "AAPL.csv", text)
    assert [104.0, 102.5, 99.0] == CsvMarket(tmp_path).bars("AAPL", "1d").close.tolist()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("1704153600", "1704157200"),
        ("2024-01-02T00:00:00Z", "2024-01-02T01:00:00+00:00"),
        ("2024-01-02 00:00", "2024-01-02 01:00"),
    ],
)
def test_reads_unix_seconds_and_iso_datetimes(tmp_path: Path, first: str, second: str) -> None:
    """Unix seconds, ISO datetimes with or without an offset (naive means UTC)."""
    write(
        tmp_path,
        "X.csv",
        f"Date,Open,High,Low,Close,Volume\n{first},1,2,1,2,10\n{second},2,3,2,3,10\n",
    )
    assert [1704153600, 1704157200] == CsvMarket(tmp_path).bars("X", "1h").time.tolist()


def test_records_the_requested_timeframe_as_a_label(tmp_path: Path) -> None:
    """The file's own bars come back, labelled with the timeframe asked for."""
    write(tmp_path, "AAPL.csv", YAHOO)
    market = CsvMarket(tmp_path)
    assert ("1h", "1d") == (
        market.bars("AAPL", "1h").timeframe,
        market.bars("AAPL", "1d").timeframe,
    )


def test_lists_symbols_one_venue_and_no_funding(tmp_path: Path) -> None:
    """Symbols are the *.csv stems, sorted; one venue; no funding."""
    for name in ("MSFT.csv", "AAPL.csv", "notes.txt"):
        write(tmp_path, name, YAHOO)
    market = CsvMarket(tmp_path)
    assert ["AAPL", "MSFT"] == list(market.symbols())
    assert ["csv"] == list(market.venues())
    assert market.funding_rates("AAPL") is None
    assert f"csv:{tmp_path}" == market.name


def test_files_are_read_once_while_unchanged(tmp_path: Path) -> None:
    """A file is parsed on first use and kept while its size and mtime stay."""
    write(tmp_path, "AAPL.csv", YAHOO)
    market = CsvMarket(tmp_path)
    first = market.bars("AAPL", "1d")
    assert first.close is market.bars("AAPL", "1d").close


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    """A file that changed is parsed again, and its freshness tag changes with it."""
    path = write(tmp_path, "AAPL.csv", YAHOO)
    market = CsvMarket(tmp_path)
    key = SeriesKey.bars("csv", "AAPL", "1d")
    before, tag = len(market.bars("AAPL", "1d")), market.freshness(key, 0.0).tag
    path.write_text(YAHOO + "2024-01-09,190.0,191.0,189.0,190.5,190.5,1000\n")
    assert before + 1 == len(market.bars("AAPL", "1d"))
    assert tag != market.freshness(key, 0.0).tag


def test_a_removed_file_is_an_unknown_symbol(tmp_path: Path) -> None:
    """A file removed after it was read is no longer served."""
    path = write(tmp_path, "AAPL.csv", YAHOO)
    market = CsvMarket(tmp_path)
    market.bars("AAPL", "1d")
    path.unlink()
    with pytest.raises(MarketDataError, match="unknown symbol"):
        market.bars("AAPL", "1d")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "Date,Open,High,Low,Close\n2024-01-02,1,2,1,2\n2024-01-03,1,2,1,2\n",
            "missing column(s) Volume",
        ),
        ("Open,High,Low,Close,Volume\n1,2,1,2,3\n1,2,1,2,3\n", "missing column(s) Date"),
        (
            "Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,1,2,3\n2024-01-03,1,2,1,null,3\n",
            "row 3: cannot parse close 'null'",
        ),
        (
            "Date,Open,High,Low,Close,Volume\n2024-01-03,1,2,1,2,3\n2024-01-02,1,2,1,2,3\n",
            "row 3: date is not after",
        ),
        (
            "Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,1,2,3\n2024-01-02,1,2,1,2,3\n",
            "row 3: date is not after",
        ),
        (
            "Date,Open,High,Low,Close,Volume\nyesterday,1,2,1,2,3\n2024-01-02,1,2,1,2,3\n",
            "row 2: cannot parse date",
        ),
        (
            "Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,2,1,3\n2024-01-03,1,2,1,2,3\n",
            "row 2: high 1 is below low 2",
        ),
        ("Date,Open,High,Low,Close,Volume\n2024-01-02,1,2,1,2,3\n", "fewer than 2 rows"),
        ("", "missing column(s)"),
    ],
    ids=[
        "no-volume",
        "no-date",
        "bad-number",
        "decreasing",
        "repeated",
        "bad-date",
        "high-below-low",
        "one-row",
        "empty",
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    """Every defect is a MarketDataError naming the file and, where it has one, the row."""
    path = write(tmp_path, "BAD.csv", text)
    with pytest.raises(MarketDataError) as raised:
        CsvMarket(tmp_path).bars("BAD", "1d")
    assert str(path) in str(raised.value)
    assert problem in str(raised.value)


@pytest.mark.parametrize("symbol", ["NOPE", "../etc/passwd", ".hidden", ""])
def test_unknown_or_unsafe_symbols_are_refused(tmp_path: Path, symbol: str) -> None:
    """A symbol without a file, or naming one outside the directory, is a MarketDataError."""
    write(tmp_path, ".hidden.csv", YAHOO)
    with pytest.raises(MarketDataError, match="unknown symbol"):
        CsvMarket(tmp_path).bars(symbol, "1d")


def test_a_missing_directory_is_refused(tmp_path: Path) -> None:
    """The directory must exist when the market is made."""
    with pytest.raises(MarketDataError, match="not a directory"):
        CsvMarket(tmp_path / "absent")
