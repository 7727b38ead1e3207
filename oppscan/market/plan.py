"""A scan's fetch plan: each distinct series its strategies need, fetched once.

`ScanFetch` starts every series of a scan on the worker's `FetchPool` at once
(at most its thread count run together) and says when the series of one
strategy are in, so that strategy starts without waiting for the others'.
`ScanMarket` is what a strategy then reads: the scan's series, never a
source.
"""

from __future__ import annotations

import functools
import queue
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from oppscan.market.base import (
    Bars,
    FloatArray,
    Freshness,
    MarketDataError,
    SeriesKey,
    candle_freshness,
)
from oppscan.market.cache import Got, SeriesCache
from oppscan.market.encoding import Series


class FetchPool:
    """A worker's fetch threads. Daemons: a fetch stuck on a silent exchange never
    holds up the worker's exit (the source's own timeout ends it meanwhile)."""

    def __init__(self, threads: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = threads
        for i in range(threads):
            threading.Thread(target=self._loop, name=f"fetch-{i}", daemon=True).start()

    def submit(self, call: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._jobs.put((call, future))
        return future

    def close(self) -> None:
        for _ in range(self._threads):
            self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)


def fetch_order(keys: Iterable[SeriesKey], primary: str, rng: random.Random) -> list[SeriesKey]:
    """The primary venue's bars first (most strategies read nothing else, so they start
    early), then the other venues' bars, then funding; shuffled within each group, so
    that workers fetching one universe at once claim different series rather than all
    wait on the same few."""

    def group(key: SeriesKey) -> int:
        if key.kind == "funding":
            return 2
        return 0 if key.venue == primary else 1

    distinct = sorted(set(keys))
    rng.shuffle(distinct)
    return sorted(distinct, key=group)  # stable: the shuffle holds within a group


@dataclass(frozen=True)
class Failed:
    """A series that could not be had, and why (the message names the source)."""

    key: SeriesKey
    error: str


class ScanFetch:
    """The series of one scan, each fetched once, all at once (see module doc)."""

    def __init__(self, cache: SeriesCache, pool: FetchPool, keys: Iterable[SeriesKey]) -> None:
        self._cache = cache
        self._futures: dict[SeriesKey, Future[Got]] = {}
        primary = cache.market.venues()[0]
        spread = random.Random()  # noqa: S311  # spreads claims over workers; no secret
        for key in fetch_order(keys, primary, spread):
            self._futures[key] = pool.submit(functools.partial(cache.get, key))

    @property
    def source(self) -> str:
        return self._cache.market.name

    def keys(self) -> list[SeriesKey]:
        """Every distinct series of the scan."""
        return list(self._futures)

    def cancel(self) -> None:
        """Drop the fetches not started yet (their series fail as cancelled)."""
        for future in self._futures.values():
            future.cancel()

    def when_ready(self, keys: Iterable[SeriesKey], call: Callable[[], object]) -> None:
        """Call `call` once every series of `keys` is in or failed (at once when they are)."""
        waiting = [self._futures[key] for key in set(keys)]
        left = [len(waiting)]
        lock = threading.Lock()

        def one_done(_future: Future[Got]) -> None:
            with lock:
                left[0] -= 1
                last = left[0] == 0
            if last:
                call()

        if not waiting:
            call()
        for future in waiting:
            future.add_done_callback(one_done)

    def failures(self, keys: Iterable[SeriesKey]) -> list[Failed]:
        """Those of `keys` (all done) that could not be had."""
        return [
            Failed(key, _error(self._futures[key]))
            for key in sorted(set(keys))
            if _failed(self._futures[key])
        ]

    def every_fetch_failed(self) -> bool:
        """True once every series is done and none brought data: each failed, or was a
        funding history the source does not offer."""
        futures = self._futures.values()
        return bool(self._futures) and all(f.done() and not _has_data(f) for f in futures)

    def market(self, keys: Iterable[SeriesKey], fallback: SeriesCache | None) -> ScanMarket:
        """What a strategy reading `keys` sees; a series it did not declare comes from
        `fallback` (None: it is an error)."""
        series = {key: self._futures[key].result().series for key in set(keys)}
        market = self._cache.market
        return ScanMarket(market.name, tuple(market.venues()), series, fallback)

    def summary(self) -> dict[str, Any]:
        """`metadata.market` of the results: how each distinct series was had."""
        done = [f for f in self._futures.values() if f.done()]
        outcomes = Counter(f.result().how.value for f in done if not _failed(f))
        return {
            "source": self.source,
            "series": len(self._futures),
            "fetched": outcomes["fetched"],
            "cached": outcomes["cached"],
            "shared": outcomes["shared"],
            "failed": sum(1 for f in done if _failed(f)),
        }


def _failed(future: Future[Got]) -> bool:
    return future.cancelled() or future.exception() is not None


def _has_data(future: Future[Got]) -> bool:
    return not _failed(future) and len(future.result().series) > 0


def _error(future: Future[Got]) -> str:
    if future.cancelled():
        return "the scan ended before this series was fetched"
    exc = future.exception()
    return str(exc) if isinstance(exc, MarketDataError) else f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class ScanMarket:
    """The market a strategy of a scan reads: the series fetched for it.

    Picklable without its fallback, so a strategy child process gets it whole.
    """

    name: str
    venue_list: tuple[str, ...]
    series: Mapping[SeriesKey, Series]
    fallback: SeriesCache | None = field(default=None, compare=False)

    def symbols(self) -> Sequence[str]:
        return sorted({key.symbol for key in self.series})

    def venues(self) -> Sequence[str]:
        return self.venue_list

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        found = self._get(SeriesKey.bars(venue or self.venue_list[0], symbol, timeframe))
        assert isinstance(found, Bars)
        return found

    def funding_rates(self, symbol: str) -> FloatArray | None:
        found = self._get(SeriesKey.funding(self.venue_list[0], symbol))
        assert not isinstance(found, Bars)
        return found if len(found) else None

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        return candle_freshness(key.timeframe, now)

    def detached(self) -> ScanMarket:
        """This market without its fallback: for a child process."""
        return ScanMarket(self.name, self.venue_list, self.series)

    def _get(self, key: SeriesKey) -> Series:
        found = self.series.get(key)
        if found is not None:
            return found
        if self.fallback is None:
            raise MarketDataError(f"{key} was not among the series the strategy declared")
        return self.fallback.get(key).series
