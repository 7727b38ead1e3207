"""Market data from a directory of CSV files: one SYMBOL.csv per symbol.

Yahoo-style exports: Date, Open, High, Low, Close, Volume in any case and order,
an optional Adj Close (ignored), and the date column possibly unnamed when it
comes first. Dates are ISO dates, ISO datetimes (naive means UTC) or unix
seconds. One venue, no funding. Files are read on first use and kept until they change.
"""

from __future__ import annotations

import csv
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from oppscan.market.base import Bars, FloatArray, Freshness, MarketDataError, SeriesKey

VENUE = "csv"
_PRICES = ("open", "high", "low", "close")
_COLUMNS = (*_PRICES, "volume")
_DATE_NAMES = ("date", "datetime", "time", "timestamp")
FILE_TTL = 3600.0  # a copy names the file's version, so it may stay as long as memory allows


def _column_indexes(path: Path, header: Sequence[str]) -> dict[str, int]:
    names = [name.strip().lower() for name in header]
    indexes = {name: names.index(name) for name in _COLUMNS if name in names}
    date = next((names.index(name) for name in _DATE_NAMES if name in names), None)
    if date is None and names and not names[0]:
        date = 0  # pandas' to_csv leaves the index column unnamed
    if date is not None:
        indexes["date"] = date
    missing = [name.capitalize() for name in ("date", *_COLUMNS) if name not in indexes]
    if missing:
        raise MarketDataError(f"{path}: missing column(s) {', '.join(missing)}")
    return indexes


def _timestamp(text: str) -> int:
    text = text.strip()
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        pass
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _parse_row(path: Path, line: int, row: Sequence[str], columns: dict[str, int]) -> list[float]:
    """[time, open, high, low, close, volume] of one data row."""
    values: list[float] = []
    for name in ("date", *_COLUMNS):
        text = row[columns[name]] if columns[name] < len(row) else ""
        try:
            value = float(_timestamp(text)) if name == "date" else float(text)
        except ValueError:
            raise MarketDataError(f"{path}: row {line}: cannot parse {name} {text!r}") from None
        if not np.isfinite(value):
            raise MarketDataError(f"{path}: row {line}: {name} is not a finite number ({text!r})")
        values.append(value)
    return values


def _check_row(path: Path, line: int, values: list[float], previous: float | None) -> None:
    stamp, open_, high, low, close, volume = values
    if previous is not None and stamp <= previous:
        raise MarketDataError(
            f"{path}: row {line}: date is not after the previous row's (dates must increase)"
        )
    if min(open_, high, low, close) <= 0 or volume < 0:
        raise MarketDataError(
            f"{path}: row {line}: prices must be positive and volume not negative"
        )
    if high < low:
        raise MarketDataError(f"{path}: row {line}: high {high:g} is below low {low:g}")


def read_bars(path: Path, symbol: str) -> Bars:
    """Parse and check one file; every problem is a MarketDataError naming the file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            columns = _column_indexes(path, header)
            rows: list[list[float]] = []
            for row in reader:
                if any(cell.strip() for cell in row):
                    values = _parse_row(path, reader.line_num, row, columns)
                    _check_row(path, reader.line_num, values, rows[-1][0] if rows else None)
                    rows.append(values)
    except OSError as exc:
        raise MarketDataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, csv.Error) as exc:
        raise MarketDataError(f"{path}: not a readable CSV file ({exc})") from exc
    if len(rows) < 2:
        raise MarketDataError(f"{path}: fewer than 2 rows of bars")
    table = np.array(rows, dtype=np.float64)
    arrays = [np.ascontiguousarray(table[:, k]) for k in range(1, 6)]
    for array in arrays:
        array.flags.writeable = False
    stamps = table[:, 0].astype(np.int64)
    stamps.flags.writeable = False
    return Bars(symbol, VENUE, "", stamps, *arrays)


class CsvMarket:
    """Bars from `directory`/SYMBOL.csv, read lazily and kept until the file changes."""

    def __init__(self, directory: Path, latency_ms: float = 0.0) -> None:
        self._directory = Path(directory)
        if not self._directory.is_dir():
            raise MarketDataError(f"{self._directory}: not a directory of CSV files")
        self._latency_s = max(0.0, latency_ms) / 1000.0
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[str, Bars]] = {}  # symbol: (file version, bars)

    @property
    def name(self) -> str:
        return f"csv:{self._directory}"

    def symbols(self) -> Sequence[str]:
        return tuple(sorted(p.stem for p in self._directory.glob("*.csv") if p.is_file()))

    def venues(self) -> Sequence[str]:
        return (VENUE,)

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        """The file's own bars, whatever the timeframe; it is only recorded as a label."""
        if venue not in (None, VENUE):
            raise MarketDataError(f"unknown venue {venue!r}; a CSV market has only {VENUE!r}")
        version = self._version(symbol)
        with self._lock:
            kept = self._loaded.get(symbol)
            if kept is None or kept[0] != version:  # a file that changed is read again
                kept = self._loaded[symbol] = (version, read_bars(self._path(symbol), symbol))
            found = kept[1]
        if self._latency_s > 0:
            time.sleep(self._latency_s)
        return replace(found, timeframe=timeframe)

    def funding_rates(self, symbol: str) -> FloatArray | None:
        return None

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        """Good until the file changes: its size and modification time are the tag."""
        return Freshness(self._version(key.symbol), FILE_TTL)

    def _version(self, symbol: str) -> str:
        try:
            stat = self._path(symbol).stat()
        except (OSError, MarketDataError):
            return "missing"
        return f"{stat.st_mtime_ns}.{stat.st_size}"

    def _path(self, symbol: str) -> Path:
        path = self._directory / f"{symbol}.csv"
        # A symbol comes from a request: never let it name a file outside the directory.
        if (
            not symbol
            or symbol.startswith(".")
            or path.parent != self._directory
            or not path.is_file()
        ):
            raise MarketDataError(f"unknown symbol {symbol!r}: no {path.name} in {self._directory}")
        return path

    def __repr__(self) -> str:
        return f"CsvMarket({str(self._directory)!r})"
