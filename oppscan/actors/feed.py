"""Feeding a scan's strategies: each starts once the series it reads are in.

`Feeds` is what every scan of a worker shares (the strategy pool, the series
cache, the fetch threads); `StrategyFeed` is one scan's: it fetches the
distinct series of the strategies it runs once, and hands each strategy to
the pool as soon as its own are in. A strategy whose series could not be had
is `skipped` with the reason; when no series at all could be had the scan
fails, naming the source.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from oppscan.actors.strategy_run import ScanFailure, StrategyJob, StrategyPool
from oppscan.logs import get_logger
from oppscan.market.base import SeriesKey
from oppscan.market.cache import SeriesCache
from oppscan.market.plan import Failed, FetchPool, ScanFetch
from oppscan.model import ScanParams, StrategyResult
from oppscan.strategies import Strategy, StrategyContext, Universe, series_needed

Outcome = StrategyResult | ScanFailure
log = get_logger("oppscan.scan")


@dataclass(frozen=True)
class Feeds:
    """A worker's way to run strategies on fetched series."""

    pool: StrategyPool
    cache: SeriesCache
    fetchers: FetchPool
    strategies: Mapping[str, Strategy]

    def for_scan(self, scan_id: str, params: ScanParams, names: Iterable[str]) -> StrategyFeed:
        """Start fetching what the strategies `names` of the scan read."""
        market = self.cache.market
        universe = Universe(params.symbols, params.timeframe, tuple(market.venues()))
        needs = {name: _declared(self.strategies[name], universe, scan_id) for name in names}
        fetch = ScanFetch(self.cache, self.fetchers, (k for keys in needs.values() for k in keys))
        return StrategyFeed(self, fetch, needs, params, scan_id)

    def close(self) -> None:
        self.fetchers.close()
        self.cache.close()
        self.pool.shutdown()


class StrategyFeed:
    """One scan's strategies, each started when its series are in (see module doc)."""

    def __init__(
        self,
        feeds: Feeds,
        fetch: ScanFetch,
        needs: Mapping[str, frozenset[SeriesKey]],
        params: ScanParams,
        scan_id: str,
    ) -> None:
        self._feeds = feeds
        self._fetch = fetch
        self._needs = needs
        self._params = params
        self._scan_id = scan_id

    def submit(self, name: str, on_start: Callable[[], None] | None = None) -> Future[Outcome]:
        """The strategy's outcome to be: cancellable until the strategy starts (when
        `on_start` is called, on the thread that runs it)."""
        future: Future[Outcome] = Future()
        start = functools.partial(self._start, on_start=on_start)
        self._fetch.when_ready(self._needs[name], lambda: self._guarded(start, name, future))
        return future

    def cancel(self) -> None:
        """The scan ended: drop its fetches not yet started (others' are not affected)."""
        self._fetch.cancel()

    def _guarded(
        self, step: Callable[[str, Future[Outcome]], None], name: str, future: Future[Outcome]
    ) -> None:
        """Run `step` (a future's callback, whose exceptions concurrent.futures would only
        log): a bug in it ends the strategy as `error`, never leaves the scan waiting."""
        try:
            step(name, future)
        except Exception as exc:
            log.exception("strategy_feed_error", scan_id=self._scan_id, strategy=name)
            error = f"{type(exc).__name__}: {exc}"
            _settle(future, StrategyResult(name, "error", (), 0, error))

    def market_summary(self) -> dict[str, Any]:
        """`metadata.market`: the source, and how each distinct series was had."""
        return self._fetch.summary()

    def _start(
        self, name: str, future: Future[Outcome], on_start: Callable[[], None] | None = None
    ) -> None:
        """On the thread that brought its last series in: run it, or if some failed,
        decide once the whole plan is done (all failed: the scan fails)."""
        if future.done():  # cancelled while its series came in
            return
        if self._fetch.failures(self._needs[name]):
            everything = self._fetch.keys()
            self._fetch.when_ready(everything, lambda: self._guarded(self._without, name, future))
            return
        market = self._fetch.market(self._needs[name], fallback=self._feeds.cache)
        ctx = StrategyContext(market, self._params.symbols, self._params.timeframe)
        self._feeds.pool.submit(StrategyJob(name, ctx, self._scan_id, future, on_start))

    def _without(self, name: str, future: Future[Outcome]) -> None:
        if self._fetch.every_fetch_failed():
            error = self._fetch.failures(self._fetch.keys())[0].error
            source = self._fetch.source
            _settle(future, ScanFailure(name, f"no market data from {source}: {error}"))
        else:
            failed = self._fetch.failures(self._needs[name])
            _settle(future, StrategyResult(name, "skipped", (), 0, _reason(failed)))


def _settle(future: Future[Outcome], outcome: Outcome) -> None:
    if future.done():  # settled before the step failed, or cancelled
        return
    if future.set_running_or_notify_cancel():
        future.set_result(outcome)


def _declared(strategy: Strategy, universe: Universe, scan_id: str) -> frozenset[SeriesKey]:
    """What the strategy declares; a plugin whose `needs` raises gets the primary bars
    (and fails in `run` if that was not enough), rather than failing the scan."""
    try:
        return series_needed(strategy, universe)
    except Exception:
        log.exception("strategy_needs_error", scan_id=scan_id, strategy=strategy.name)
        return frozenset(universe.primary_bars())


def _reason(failed: list[Failed]) -> str:
    first = failed[0]
    more = f" (and {len(failed) - 1} more series)" if len(failed) > 1 else ""
    return f"no data for {first.key}{more}: {first.error}"
