"""A compact binary form of one series, for the shared cache in Redis.

Layout: a 6-byte header (magic, version, kind, bar count) then, for bars, the
timestamps as int64 deltas and open, high, low, close, volume as float64; for
funding rates, the float64 rates. The whole is zlib-compressed at level 1:
the deltas of a regular series are one repeated value, which costs next to
nothing compressed, and level 1 keeps encoding far cheaper than a fetch. No
pickle: what comes out of Redis is only ever parsed as numbers.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any, TypeVar

import numpy as np

from oppscan.market.base import Bars, FloatArray, MarketDataError, SeriesKey

Series = Bars | FloatArray
_Array = TypeVar("_Array", bound="np.ndarray[Any, Any]")  # bars, or funding rates per period

_MAGIC = b"OS"
ENCODING_VERSION = 1  # part of every cache key: workers of two versions never share copies
_HEADER = struct.Struct("<2sBBI")  # magic, version, kind (0 bars, 1 funding), count
_KINDS = {"bars": 0, "funding": 1}
_BAR_COLUMNS = 6  # time deltas, open, high, low, close, volume


def encode(series: Series) -> bytes:
    """The bytes of `series` (its key is not stored: the cache key names it)."""
    if isinstance(series, Bars):
        deltas = np.diff(series.time, prepend=np.int64(0)).astype("<i8")
        body = deltas.tobytes() + b"".join(
            np.ascontiguousarray(column, dtype="<f8").tobytes()
            for column in (series.open, series.high, series.low, series.close, series.volume)
        )
        header = _HEADER.pack(_MAGIC, ENCODING_VERSION, _KINDS["bars"], len(series))
    else:
        body = np.ascontiguousarray(series, dtype="<f8").tobytes()
        header = _HEADER.pack(_MAGIC, ENCODING_VERSION, _KINDS["funding"], int(series.shape[0]))
    return zlib.compress(header + body, 1)


def decode(key: SeriesKey, data: bytes) -> Series:
    """The series `encode` made for `key`; MarketDataError when the bytes are not one."""
    try:
        raw = zlib.decompress(data)
        magic, version, kind, count = _HEADER.unpack_from(raw)
    except (zlib.error, struct.error) as exc:
        raise MarketDataError(f"cached {key} is unreadable: {exc}") from None
    if magic != _MAGIC or version != ENCODING_VERSION or kind != _KINDS[key.kind]:
        raise MarketDataError(f"cached {key} is of another format")
    columns = _BAR_COLUMNS if key.kind == "bars" else 1
    if len(raw) != _HEADER.size + 8 * columns * count:
        raise MarketDataError(f"cached {key} is truncated")
    if key.kind == "funding":
        return _frozen(np.frombuffer(raw, "<f8", count, _HEADER.size).astype(np.float64))
    table = np.frombuffer(raw, "<f8", columns * count, _HEADER.size).reshape(columns, count)
    deltas = np.frombuffer(raw, "<i8", count, _HEADER.size)
    prices = [_frozen(table[i].astype(np.float64)) for i in range(1, columns)]
    stamps = _frozen(np.cumsum(deltas, dtype=np.int64))
    return Bars(key.symbol, key.venue, key.timeframe, stamps, *prices)


def _frozen(values: _Array) -> _Array:
    values.flags.writeable = False
    return values
