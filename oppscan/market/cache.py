"""One fetch per series across a deployment: a worker's series cache.

A series is asked for by (source, series, freshness tag): the tag is the
candle it was fetched in (or a file's version), so a copy is served only
while that candle is open. The layers, in order:

1. this worker's memory, bounded in bytes, each copy until its candle closes;
2. a fetch of the same series already under way in this worker: wait for it;
3. Redis: a copy any worker stored (`cached`); else become the deployment's one
   fetcher of it, or wait (bounded) for the worker that is (`shared`);
4. the source itself (`fetched`).

Redis trouble at any step means fetching directly: a store outage costs
time, never a scan.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

import numpy as np
from cachetools import TLRUCache

from oppscan.logs import get_logger
from oppscan.market.base import Bars, FloatArray, MarketData, MarketDataError, SeriesKey
from oppscan.market.encoding import ENCODING_VERSION, Series, decode, encode
from oppscan.metrics import MARKET_FETCH_SECONDS, MARKET_FETCHES
from oppscan.storage.client import StoreUnavailable

T = TypeVar("T")

log = get_logger("oppscan.market")

SHARED_MARGIN = 60.0  # seconds a copy outlives its candle in Redis: late readers, clock skew
CLAIM_TTL = 5.0  # seconds a claim to fetch lasts unless its worker, alive, extends it
CLAIM_RENEWAL = 1.0  # seconds between extensions
FIRST_POLL, LAST_POLL = 0.01, 0.2  # seconds between looks for another worker's fetch


NO_FUNDING: FloatArray = np.zeros(0)
NO_FUNDING.flags.writeable = False


class Obtained(StrEnum):
    """How a scan came by a series."""

    FETCHED = "fetched"  # from the source, by this worker
    CACHED = "cached"  # a copy in memory or in Redis
    SHARED = "shared"  # another scan's fetch, waited for


@dataclass(frozen=True)
class Got:
    series: Series
    how: Obtained


class SharedSeries(Protocol):
    """The Redis side (`storage.MarketStore`); any method may raise StoreUnavailable."""

    def series_or_fetch(self, name: str, token: str, ttl_ms: int) -> bytes | bool: ...

    def share(self, name: str, data: bytes, ttl_ms: int, token: str) -> None: ...

    def extend_fetch(self, name: str, token: str, ttl_ms: int) -> None: ...

    def end_fetch(self, name: str, token: str) -> None: ...


def series_bytes(series: Series) -> int:
    """What a series costs in memory (its arrays)."""
    if isinstance(series, Bars):
        columns = (series.time, series.open, series.high, series.low, series.close, series.volume)
        return sum(int(column.nbytes) for column in columns)
    return int(series.nbytes)


def source_label(market: MarketData, venue: str) -> str:
    """The `source` label of the market metrics: the exchange for ccxt, else the kind."""
    kind = market.name.split(":", 1)[0]
    return f"ccxt:{venue}" if kind == "ccxt" else kind


@dataclass(frozen=True)
class _Entry:
    series: Series
    expires: float  # time.monotonic()


class SeriesCache:
    """A worker's way to a series: memory, then Redis, then the source (see module doc).

    Thread-safe; `get` may be called by many fetch threads at once.
    """

    def __init__(
        self,
        market: MarketData,
        shared: SharedSeries | None,
        memory_bytes: int,
        fetch_timeout: float,
        clock: Callable[[], float] = time.time,
        variant: str = "",
    ) -> None:
        self.market = market
        self._variant = variant  # what else tells this source's copies apart (its options)
        self._shared = shared
        self._fetch_timeout = fetch_timeout
        self._clock = clock
        self._lock = threading.Lock()
        self._memory: TLRUCache[tuple[SeriesKey, str], _Entry] = TLRUCache(
            maxsize=memory_bytes,
            ttu=lambda _key, entry, _now: entry.expires,
            timer=time.monotonic,
            getsizeof=lambda entry: series_bytes(entry.series),
        )
        self._flights: dict[tuple[SeriesKey, str], Future[Series]] = {}
        # Claims this worker holds on fetches in Redis (name: token), kept alive by a
        # thread while it lives: a worker that dies mid-fetch stalls others seconds at most.
        self._claims: dict[str, str] = {}
        self._closed = threading.Event()
        if shared is not None:
            threading.Thread(target=self._renew_claims, name="series-claims", daemon=True).start()

    def close(self) -> None:
        """Stop extending claims and give up those held: other workers fetch at once."""
        self._closed.set()
        shared = self._shared
        with self._lock:
            claims, self._claims = dict(self._claims), {}
        if shared is not None:
            for name, token in claims.items():
                _quietly(functools.partial(shared.end_fetch, name, token))

    def _renew_claims(self) -> None:
        assert self._shared is not None
        shared = self._shared
        ttl_ms = round(CLAIM_TTL * 1000)
        while not self._closed.wait(CLAIM_RENEWAL):
            with self._lock:
                claims = list(self._claims.items())
            for name, token in claims:
                _quietly(functools.partial(shared.extend_fetch, name, token, ttl_ms))

    def get(self, key: SeriesKey) -> Got:
        """The series, and how it was had; MarketDataError when it cannot be."""
        fresh = self.market.freshness(key, self._clock())
        ident = (key, fresh.tag)
        with self._lock:
            kept = self._memory.get(ident)
            flight = self._flights.get(ident)
            leader = kept is None and flight is None
            if leader:
                flight = self._flights[ident] = Future()
        if kept is not None:
            self._count(key, Obtained.CACHED)
            return Got(kept.series, Obtained.CACHED)
        assert flight is not None
        if not leader:
            return self._follow(key, flight)
        try:
            got = self._obtain(key, fresh.tag, fresh.ttl)
        except BaseException as exc:
            self._land(ident, flight)
            flight.set_exception(exc)
            raise
        self._land(ident, flight, got.series, fresh.ttl)
        flight.set_result(got.series)
        return got

    def _follow(self, key: SeriesKey, flight: Future[Series]) -> Got:
        """Another scan of this worker fetches `key` now: its outcome is ours, however
        long it takes (the leader settles its flight on every path, and its own wait
        and the source's timeouts bound it), so two scans never disagree on a series."""
        series = flight.result()
        self._count(key, Obtained.SHARED)
        return Got(series, Obtained.SHARED)

    def _land(
        self,
        ident: tuple[SeriesKey, str],
        flight: Future[Series],
        series: Series | None = None,
        ttl: float = 0.0,
    ) -> None:
        """End this worker's fetch: keep the series first, so a scan that asks next finds
        it in memory rather than starting a fetch of its own."""
        with self._lock:
            if series is not None:
                # A series larger than the whole layer is not kept (ValueError).
                with contextlib.suppress(ValueError):
                    self._memory[ident] = _Entry(series, time.monotonic() + ttl)
            if self._flights.get(ident) is flight:
                del self._flights[ident]

    def _obtain(self, key: SeriesKey, tag: str, ttl: float) -> Got:
        """From Redis, from another worker's fetch, or from the source."""
        if self._shared is not None:
            try:
                got = self._through_redis(self._shared, key, tag, ttl)
            except StoreTrouble as trouble:
                log.info("series_cache_unavailable", series=str(key), failure_reason=trouble.reason)
            else:
                if got is not None:
                    return got
        return Got(self._fetch(key), Obtained.FETCHED)

    def _through_redis(
        self, shared: SharedSeries, key: SeriesKey, tag: str, ttl: float
    ) -> Got | None:
        """A copy in Redis, or one this worker fetches and stores, or another worker's
        once it lands; None: fetch directly (the wait ran out)."""
        name = self._name(key, tag)
        token = secrets.token_hex(8)
        claim_ms = round(CLAIM_TTL * 1000)
        deadline = time.monotonic() + self._fetch_timeout
        pause = FIRST_POLL
        waited = False
        while True:
            found = _store_call(lambda: shared.series_or_fetch(name, token, claim_ms))
            if isinstance(found, bytes):
                series = self._decoded(key, found)
                if series is not None:
                    how = Obtained.SHARED if waited else Obtained.CACHED
                    self._count(key, how)
                    return Got(series, how)
                found = True  # unreadable (another version's): fetch and store anew
            if found:
                return Got(self._fetch_and_share(shared, key, name, token, ttl), Obtained.FETCHED)
            if time.monotonic() + pause > deadline:
                return None
            waited = True
            time.sleep(pause)  # another worker fetches it: look again shortly
            pause = min(LAST_POLL, pause * 2)

    def _fetch_and_share(
        self, shared: SharedSeries, key: SeriesKey, name: str, token: str, ttl: float
    ) -> Series:
        with self._lock:
            self._claims[name] = token
        try:
            series = self._fetch(key)
        except BaseException:
            self._unclaim(name)
            _quietly(lambda: shared.end_fetch(name, token))
            raise
        self._unclaim(name)
        ttl_ms = round((ttl + SHARED_MARGIN) * 1000)
        _quietly(lambda: shared.share(name, encode(series), ttl_ms, token))
        return series

    def _unclaim(self, name: str) -> None:
        with self._lock:
            self._claims.pop(name, None)

    def _decoded(self, key: SeriesKey, data: bytes) -> Series | None:
        try:
            return decode(key, data)
        except MarketDataError as exc:  # another version's copy: fetch anew
            log.warning("series_cache_unreadable", series=str(key), failure_reason=str(exc))
            return None

    def _fetch(self, key: SeriesKey) -> Series:
        """One request (or a few pages) to the source, timed and counted."""
        source = source_label(self.market, key.venue)
        started = time.perf_counter()
        try:
            series = self._from_source(key)
        except MarketDataError:
            MARKET_FETCHES.labels(source, "error").inc()
            raise
        finally:
            MARKET_FETCH_SECONDS.labels(source).observe(time.perf_counter() - started)
        MARKET_FETCHES.labels(source, Obtained.FETCHED.value).inc()
        return series

    def _from_source(self, key: SeriesKey) -> Series:
        if key.kind == "bars":
            return self.market.bars(key.symbol, key.timeframe, key.venue)
        rates = self.market.funding_rates(key.symbol)
        # "Not offered" is an answer like any other, kept as long: an empty series.
        return NO_FUNDING if rates is None else rates

    def _count(self, key: SeriesKey, how: Obtained) -> None:
        MARKET_FETCHES.labels(source_label(self.market, key.venue), how.value).inc()

    def _name(self, key: SeriesKey, tag: str) -> str:
        source = f"{self.market.name}#{self._variant}" if self._variant else self.market.name
        parts = (source, key.kind, key.venue, key.symbol, key.timeframe, tag)
        return f"v{ENCODING_VERSION}|" + "|".join(parts)


class StoreTrouble(Exception):
    """Redis could not help with a series; the caller fetches it directly."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _store_call(call: Callable[[], T]) -> T:
    try:
        return call()
    except StoreUnavailable as exc:
        raise StoreTrouble(exc.reason) from exc


def _quietly(call: Callable[[], object]) -> None:
    """A write that helps others; if Redis cannot take it, they fetch for themselves."""
    try:
        _store_call(call)
    except StoreTrouble as trouble:
        log.info("series_cache_unavailable", failure_reason=trouble.reason)
