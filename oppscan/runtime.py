"""A worker's running parts, and the one place that starts and stops them.

Called after fork (lazily, by the first app creation in a gunicorn worker),
never in the master.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pykka

from oppscan import installed_version
from oppscan.actors import RegistryActor, RegistryView
from oppscan.actors.feed import Feeds
from oppscan.actors.proxies import RegistryProxy, ScanActorProxy, registry_proxy
from oppscan.actors.scan import Registrar, ScanDeps, schedule_with_timer
from oppscan.actors.steward import Steward
from oppscan.actors.strategy_run import ProcessStrategyPool, StrategyPool, ThreadStrategyPool
from oppscan.logs import get_logger
from oppscan.market import CcxtSetup, MarketData, load_market
from oppscan.market.cache import SeriesCache, source_label
from oppscan.market.limits import SharedThrottle
from oppscan.market.plan import FetchPool
from oppscan.market.throttle import LocalThrottle
from oppscan.metrics import MARKET_FETCHES, export_at_zero
from oppscan.settings import Settings, worker_name
from oppscan.storage import MarketStore, Store, open_store, redis_address
from oppscan.strategies import Strategy, available_strategies

log = get_logger("oppscan.runtime")

HURRY_CHECK = 0.05  # seconds between looks at `quick()` while a stop waits


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    store: Store
    market: MarketData
    strategies: Mapping[str, Strategy]
    feeds: Feeds
    registry: RegistryProxy  # the one writer of `view`
    view: RegistryView
    worker: str
    steward: Steward | None = None


def start_runtime(
    settings: Settings, on_registry_failure: Callable[[], object] | None = None
) -> Runtime:
    """Store, market, strategies, their pool, the registry actor, then the steward.

    `on_registry_failure` is called if the registry actor stops on a bug (under
    gunicorn: the worker asks to be replaced).
    """
    if settings.redis_url is None:
        raise RuntimeError("no Redis URL: set OPPSCAN_REDIS_URL or run `oppscan serve`")
    store = open_store(
        settings.redis_url,
        settings.key_prefix,
        settings.redis_timeout,
        shards=settings.redis_shards,
    )
    if not store.probe():
        # Not fatal: the steward keeps probing, `/readyz` answers 503 until Redis does.
        log.warning(
            "store_unreachable",
            redis=redis_address(settings.redis_url),
            failure_reason="no_answer_at_start",
        )
    shared = store.market()
    market = load_market(
        settings.market, settings.synthetic_latency_ms, ccxt_setup(settings, shared)
    )
    strategies = available_strategies()
    export_at_zero(installed_version(), {source_label(market, v) for v in market.venues()})
    feeds = market_feeds(settings, shared, market, strategies)
    view = RegistryView(settings.cache_ttl, settings.cache_max_mb * 2**20, settings.result_ttl)
    worker = worker_name()

    def deps_for(registrar: Registrar) -> ScanDeps:
        return ScanDeps(
            store=store,
            feeds=feeds,
            registrar=registrar,
            result_ttl=settings.result_ttl,
            results_cap=settings.results_cap,
            schedule=schedule_with_timer,
            worker=worker,
            lease_ms=settings.lease_ms,
            holds_lease=view.holds,
        )

    registry = registry_proxy(
        RegistryActor.start(view, deps_for, settings.lease_ttl, on_registry_failure)
    )
    steward = Steward(store, registry, view, worker, settings).start()
    log.info("runtime_started", market=market.name, strategies=len(strategies))
    return Runtime(settings, store, market, strategies, feeds, registry, view, worker, steward)


def stop_runtime(
    runtime: Runtime, timeout: float = 5.0, *, quick: Callable[[], bool] = lambda: False
) -> None:
    """Steward, then scans (handing their leases off), registry, strategy pool, store.

    While `quick()` is false the scans' running strategies get up to the
    hand-off timeout to finish and be saved; once it is true (Ctrl-C, even in
    the middle of that wait) the leases are released at once.
    """
    if runtime.steward is not None:
        runtime.steward.stop(timeout)
    with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
        scans = [owned.proxy for owned in runtime.view.owned().values()]
        _hand_off(scans, runtime.settings, quick)
        runtime.registry.actor_ref.stop(block=True, timeout=timeout)
    runtime.feeds.close()
    runtime.store.close()
    log.info("runtime_stopped")


def running_scans(runtime: Runtime) -> int:
    """How many scans this worker owns now."""
    return len(runtime.view.owned())


def ccxt_setup(settings: Settings, shared: MarketStore) -> CcxtSetup:
    """A ccxt market's options, its rate limits held in Redis for the whole deployment."""
    return CcxtSetup(
        symbols=settings.symbols,
        universe_size=settings.universe_size,
        config=settings.ccxt_config,
        credentials=settings.ccxt_credentials,
        throttle=SharedThrottle(shared, LocalThrottle(), settings.workers),
        on_rate_limited=count_rate_limited,
    )


def count_rate_limited(venue: str) -> None:
    MARKET_FETCHES.labels(f"ccxt:{venue}", "rate_limited").inc()


def options_digest(options: Mapping[str, object]) -> str:
    """A short digest of a source's options: deployments that point one exchange id at
    different endpoints (a testnet, a region) never share cached series."""
    text = json.dumps(options, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def market_feeds(
    settings: Settings,
    shared: MarketStore | None,
    market: MarketData,
    strategies: Mapping[str, Strategy],
) -> Feeds:
    """The strategy pool, the series cache (over `shared`, the Redis side) and the
    fetch threads that every scan of this worker uses."""
    cache = SeriesCache(
        market,
        shared,
        settings.market_cache_mb * 1024 * 1024,
        settings.fetch_timeout,
        variant=options_digest(settings.ccxt_config) if settings.ccxt_config else "",
    )
    fetchers = FetchPool(settings.fetch_concurrency)
    return Feeds(strategy_pool(settings, strategies), cache, fetchers, strategies)


def strategy_pool(settings: Settings, strategies: Mapping[str, Strategy]) -> StrategyPool:
    """Child processes when `strategy_processes` is set (CPU-bound strategies), else threads;
    either way each strategy within `strategy_timeout`."""
    timeout = settings.strategy_timeout
    if settings.strategy_processes:
        return ProcessStrategyPool(settings.strategy_processes, timeout)
    return ThreadStrategyPool(settings.strategy_threads, strategies, timeout)


def _hand_off(
    scans: Sequence[ScanActorProxy], settings: Settings, quick: Callable[[], bool]
) -> None:
    """Release every scan at a strategy boundary, within the hand-off timeout,
    or at once when `quick()`; return once every lease is released."""
    deadline = time.monotonic() + settings.handoff_timeout
    waiting: list[tuple[ScanActorProxy, threading.Event]] = []
    for proxy in scans:
        with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
            waiting.append((proxy, proxy.release().get(timeout=settings.ask_timeout)))
    _wait_all([stopped for _, stopped in waiting], deadline, quick)
    late = []
    for proxy, stopped in waiting:
        if not stopped.is_set():
            with contextlib.suppress(pykka.ActorDeadError):
                late.append(proxy.release_now())
    for released in late:  # asked, not told: the store must still be open when they run
        with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
            released.get(timeout=settings.ask_timeout)


def _wait_all(
    events: Sequence[threading.Event], deadline: float, quick: Callable[[], bool]
) -> None:
    """Until every event is set, `deadline` passes, or `quick()` turns true.

    `quick` is a flag a signal handler sets, so it is polled: waking on an
    Event from a signal handler could deadlock on the Event's own lock.
    """
    pending = list(events)
    while pending and not quick() and time.monotonic() < deadline:
        pending[0].wait(min(HURRY_CHECK, max(0.0, deadline - time.monotonic())))
        pending = [event for event in pending if not event.is_set()]
