"""Market data from real exchanges, through ccxt's sync API.

Each venue is a ccxt exchange id; the first is the primary, which picks the
universe (top spot markets by quote volume) and serves funding rates. Every
request goes through the deployment's `Throttle`: each ccxt instance's own limiter
is replaced by one that asks it. A 429/418 holds the venue off for its Retry-After
(or a backoff) and is retried within a `RetryBudget`, then raised as `RateLimited`.

ccxt's sync instances are not safe to share between threads: every request clears
the requests Session's cookies and overwrites `last_response_headers`, which is
where a 429's Retry-After is read. So each thread gets its own instance per venue;
markets are loaded once per venue and shared between them. Markets and the
universe are kept for the object's life: new listings need a new `CcxtMarket`.

The candle still open is dropped, so a fetched copy stays right until that candle
closes, which is what `candle_freshness` promises.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, TypeVar

import ccxt
import numpy as np

from oppscan.logs import get_logger
from oppscan.market.base import (
    FUNDING_PERIOD,
    HISTORY_BARS,
    TIMEFRAME_SECONDS,
    TIMEFRAMES,
    Bars,
    FloatArray,
    Freshness,
    IntArray,
    MarketDataError,
    RateLimited,
    SeriesKey,
    Throttle,
    candle_freshness,
)
from oppscan.market.throttle import LocalThrottle

log = get_logger("oppscan.market.ccxt")

Exchange = Any  # a ccxt exchange instance: ccxt ships no type hints
_T = TypeVar("_T")

# A bucket holds one second of the exchange's rate. Exchanges count over a minute
# (Binance: request weight per minute), so a one-second burst is well inside what
# they allow, yet lets a batch of series start at once instead of one by one.
BURST_SECONDS = 1.0
FUNDING_PERIODS = 90  # 30 days of 8h funding
DEFAULT_TIMEOUT_MS = 10_000
LOAD_RETRY = 5.0  # seconds a failed market load answers at once, before another try
DEFAULT_PAGE = 500  # bars per request when ccxt does not know the exchange's page size
_MARKET_TYPES = ("spot", "linear", "swap")  # spot bars, and linear perpetuals for funding
_RATE_LIMITED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)  # 418 and 429, not related
# What ccxt's parsers raise on an answer that is not the documented format.
_MALFORMED = (TypeError, AttributeError, KeyError, ValueError, IndexError)
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class RetryBudget:
    """How long a request keeps retrying after 429/418 before `RateLimited`."""

    attempts: int = 4  # requests in all, the first included
    max_wait: float = 30.0  # seconds of hold-off, summed over the retries
    backoff: float = 1.0  # the first pause when the exchange sends no Retry-After; doubles

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.max_wait < 0 or self.backoff < 0:
            raise ValueError(f"a retry budget needs an attempt and no negative times: {self}")


def retry_after_seconds(headers: Mapping[str, str] | None, now: float) -> float | None:
    """The pause a Retry-After header asks for (delta-seconds or an HTTP date), if any."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.replace(tzinfo=when.tzinfo or UTC).timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _base_config(timeout_ms: int) -> dict[str, Any]:
    return {
        "enableRateLimit": True,  # makes fetch2 call `throttle`, which is ours
        "timeout": timeout_ms,
        # Binance: currencies come from a signed endpoint when keys are set, and margin
        # pairs too; neither is needed for candles, and neither should need keys.
        "options": {"fetchCurrencies": False, "fetchMargins": False},
    }


def _narrow_market_types(exchange: Exchange, configured: Mapping[str, Any]) -> None:
    """Load only spot and linear markets (binance loads inverse too, bybit options):
    fewer requests on load_markets. An operator's `options.fetchMarkets` wins."""
    if "fetchMarkets" in configured.get("options", {}):
        return
    option = exchange.options.get("fetchMarkets")
    types = option.get("types") if isinstance(option, dict) else option
    if not isinstance(types, list):
        return
    narrowed = [t for t in types if t in _MARKET_TYPES] or types
    exchange.options["fetchMarkets"] = (
        {**option, "types": narrowed} if isinstance(option, dict) else narrowed
    )


def page_limit(exchange: Exchange, market: Mapping[str, Any]) -> int:
    """Bars one fetch_ohlcv may return, from ccxt's `features` for the market's type."""
    features = exchange.features or {}
    found = features.get(market.get("type")) or {}
    if market.get("subType") in found:
        found = found[market["subType"]] or {}
    limit = (found.get("fetchOHLCV") or {}).get("limit")
    return limit if isinstance(limit, int) and limit > 0 else DEFAULT_PAGE


def top_by_volume(markets: Mapping[str, Any], tickers: Mapping[str, Any], size: int) -> list[str]:
    """The `size` active spot markets of largest quote volume; ties by symbol."""
    ranked: list[tuple[float, str]] = []
    for symbol, ticker in tickers.items():
        market = markets.get(symbol) or {}
        volume = ticker.get("quoteVolume") if isinstance(ticker, Mapping) else None
        if not (market.get("spot") and market.get("active") is not False):
            continue
        if isinstance(volume, int | float) and math.isfinite(volume):
            ranked.append((-float(volume), symbol))
    return [symbol for _, symbol in sorted(ranked)[:size]]


def perpetual_of(markets: Mapping[str, Any], symbol: str) -> str | None:
    """The linear perpetual settled in the quote currency: BTC/USDT → BTC/USDT:USDT."""
    base, _, quote = symbol.partition("/")
    if not base or not quote or ":" in quote:
        return None
    market = markets.get(f"{symbol}:{quote}") or {}
    return str(market["symbol"]) if market.get("swap") and market.get("linear") else None


def _closed_rows(rows: Any, open_ms: int) -> dict[int, tuple[float, ...]]:
    """ccxt OHLCV rows by open time, checked, without the candle still open (`open_ms`)."""
    found: dict[int, tuple[float, ...]] = {}
    for row in rows:
        stamp, values = int(row[0]), tuple(float(v) for v in row[1:6])
        if len(values) != 5 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"a bar that is not five numbers: {row!r:.80}")
        if stamp < open_ms:
            found[stamp] = values
    return found


def _funding_values(history: Any) -> FloatArray:
    """Rates of ccxt's funding-history structures, oldest first, one per timestamp."""
    by_time = {int(entry["timestamp"]): float(entry["fundingRate"]) for entry in history}
    values = [by_time[t] for t in sorted(by_time)]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("a funding rate that is not a number")
    return _frozen(values)


def _frozen(values: Sequence[float]) -> FloatArray:
    array = np.array(values, dtype=np.float64)
    array.flags.writeable = False
    return array


def _seconds(stamps_ms: Sequence[int]) -> IntArray:
    array = np.array(stamps_ms, dtype=np.int64) // 1000
    array.flags.writeable = False
    return array


def _to_bars(symbol: str, venue: str, timeframe: str, rows: Mapping[int, Sequence[float]]) -> Bars:
    stamps = sorted(rows)
    columns = list(zip(*(rows[t] for t in stamps), strict=True))
    return Bars(
        symbol=symbol,
        venue=venue,
        timeframe=timeframe,
        time=_seconds(stamps),
        open=_frozen(columns[0]),
        high=_frozen(columns[1]),
        low=_frozen(columns[2]),
        close=_frozen(columns[3]),
        volume=_frozen(columns[4]),
    )


class _Venue:
    """What the threads share about one exchange: its config and its loaded markets."""

    def __init__(self, exchange_id: str, config: dict[str, Any]) -> None:
        self.id = exchange_id
        self.config = config  # credentials are merged in only when an instance is made
        self.lock = threading.Lock()
        self.loaded: Exchange | None = None  # the instance that loaded the markets
        self.failed = Failure()  # the last load that failed, for a while


class Failure:
    """A load that failed lately: callers within `retry_after` seconds get its error at
    once rather than wait, one after another, for the same exchange to time out."""

    def __init__(self) -> None:
        self._at = -math.inf
        self._error = ""

    def check(self, retry_after: float) -> None:
        if time.monotonic() - self._at < retry_after:
            raise MarketDataError(self._error)

    def note(self, error: MarketDataError) -> None:
        self._at, self._error = time.monotonic(), str(error)


class CcxtMarket:
    """Bars and funding from ccxt exchanges; the first of `exchanges` is the primary.

    `symbols` None means the primary's top `universe_size` spot markets by quote
    volume. `config` is deep-merged into each exchange's ccxt constructor config
    (endpoints, options); `credentials` are ccxt's apiKey/secret/password, never
    shown. `clock` is unix seconds: it tells which candle is still open.
    """

    def __init__(
        self,
        *,
        exchanges: Sequence[str],
        symbols: Sequence[str] | None = None,
        universe_size: int = 60,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
        throttle: Throttle | None = None,
        history: int = HISTORY_BARS,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        on_rate_limited: Callable[[str], None] | None = None,
        retry: RetryBudget = RetryBudget(),
        load_retry: float = LOAD_RETRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not exchanges or len(set(exchanges)) != len(exchanges):
            raise ValueError(f"exchanges must be distinct and at least one, got {exchanges!r}")
        if history < 1 or universe_size < 1:
            raise ValueError(
                f"history and universe_size must be positive ({history}, {universe_size})"
            )
        config = config or {}
        self._ids = tuple(exchanges)
        self._wanted = None if symbols is None else tuple(symbols)
        self._universe_size = universe_size
        self._credentials = {k: dict(v) for k, v in (credentials or {}).items()}
        self._secrets = {v for c in self._credentials.values() for v in c.values() if v}
        self._throttle: Throttle = throttle if throttle is not None else LocalThrottle()
        self._history = history
        self._on_rate_limited = on_rate_limited
        self._retry = retry
        self._load_retry = load_retry
        self._universe_failed = Failure()
        self._clock = clock
        self._venues = {
            i: _Venue(i, _deep_merge(_base_config(timeout_ms), config.get(i, {})))
            for i in self._ids
        }
        for venue in self._venues.values():
            self._check_exchange(venue)
        self._local = threading.local()
        self._universe_lock = threading.Lock()
        self._universe: tuple[str, ...] | None = None

    @property
    def name(self) -> str:
        return "ccxt:" + ",".join(self._ids)

    def venues(self) -> Sequence[str]:
        return self._ids

    def symbols(self) -> Sequence[str]:
        """The universe, sorted; loaded on first use, and tried again after a failure."""
        with self._universe_lock:
            if self._universe is None:
                self._universe_failed.check(self._load_retry)
                try:
                    self._universe = self._load_universe()
                except MarketDataError as exc:
                    self._universe_failed.note(exc)
                    raise
            return self._universe

    def bars(self, symbol: str, timeframe: str, venue: str | None = None) -> Bars:
        """The last `history` closed bars of `symbol` on `venue` (the primary if None)."""
        venue = self._venue_id(venue)
        if timeframe not in TIMEFRAMES:
            raise MarketDataError(
                f"unknown timeframe {timeframe!r}; expected one of {', '.join(TIMEFRAMES)}"
            )
        exchange = self._exchange(venue)
        market = exchange.markets.get(symbol)
        if market is None:
            raise MarketDataError(f"{venue} does not list {symbol}")
        if not (exchange.timeframes or {}).get(timeframe):  # ccxt's names are oppscan's
            raise MarketDataError(f"{venue} has no {timeframe} candles")
        rows = self._rows(venue, exchange, market, timeframe)
        if not rows:
            raise MarketDataError(f"{venue} returned no {timeframe} bars for {symbol}")
        return _to_bars(symbol, venue, timeframe, rows)

    def funding_rates(self, symbol: str) -> FloatArray | None:
        """The primary's linear perpetual's last ~30 days of funding, or None without one."""
        venue = self._ids[0]
        exchange = self._exchange(venue)
        perpetual = perpetual_of(exchange.markets, symbol)
        if perpetual is None or not exchange.has.get("fetchFundingRateHistory"):
            return None
        period_ms = TIMEFRAME_SECONDS[FUNDING_PERIOD] * 1000
        since = int(self._clock() * 1000) - FUNDING_PERIODS * period_ms
        return self._call(
            venue,
            f"{perpetual} funding",
            lambda: _funding_values(
                exchange.fetch_funding_rate_history(perpetual, since, FUNDING_PERIODS)
            ),
            exchange,
            symbol=perpetual,
        )

    def freshness(self, key: SeriesKey, now: float) -> Freshness:
        """A copy is good until the candle open at `now` closes (the open one is dropped)."""
        return candle_freshness(key.timeframe, now)

    # -- the universe ----------------------------------------------------------

    def _load_universe(self) -> tuple[str, ...]:
        if self._wanted is None:
            return self._top_by_volume()
        listed = {venue: set(self._exchange(venue).markets) for venue in self._ids}
        kept = sorted({s for s in self._wanted if any(s in m for m in listed.values())})
        for symbol in sorted(set(self._wanted) - set(kept)):
            log.warning("symbol_not_listed", source=self.name, symbol=symbol, venues=self._ids)
        if not kept:
            raise MarketDataError(f"none of {', '.join(self._wanted)} is listed on {self.name}")
        return tuple(kept)

    def _top_by_volume(self) -> tuple[str, ...]:
        venue = self._ids[0]
        exchange = self._exchange(venue)
        tickers = self._call(
            venue, "tickers", lambda: exchange.fetch_tickers(None, {"type": "spot"}), exchange
        )
        top = top_by_volume(exchange.markets, tickers, self._universe_size)
        if not top:
            raise MarketDataError(f"{venue} lists no active spot market with a quote volume")
        return tuple(sorted(top))

    # -- bars ------------------------------------------------------------------

    def _rows(
        self, venue: str, exchange: Exchange, market: Mapping[str, Any], timeframe: str
    ) -> dict[int, tuple[float, ...]]:
        """Closed bars by open time (ms): one request when a page holds them, else pages
        forward from `history` bars ago until the open candle or no progress."""
        step = TIMEFRAME_SECONDS[timeframe] * 1000
        open_ms = int(self._clock() * 1000) // step * step
        page = page_limit(exchange, market)
        symbol = str(market["symbol"])

        def fetch(since: int | None, limit: int) -> dict[int, tuple[float, ...]]:
            return self._call(
                venue,
                f"{symbol} {timeframe} bars",
                lambda: _closed_rows(
                    exchange.fetch_ohlcv(symbol, timeframe, since, limit), open_ms
                ),
                exchange,
                symbol=symbol,
            )

        if self._history + 1 <= page:  # + 1: the open candle comes too, and is dropped
            rows = fetch(None, self._history + 1)
        else:
            rows = {}
            since = open_ms - self._history * step
            for _ in range(self._history // page + 2):  # bounded, whatever the exchange does
                fresh = {t: v for t, v in fetch(since, page).items() if t >= since}
                rows.update(fresh)
                if not fresh or max(fresh) + step >= open_ms:
                    break
                since = max(fresh) + step
        return {t: rows[t] for t in sorted(rows)[-self._history :]}

    # -- exchanges -------------------------------------------------------------

    def _venue_id(self, venue: str | None) -> str:
        if venue is None:
            return self._ids[0]
        if venue not in self._venues:
            raise MarketDataError(
                f"unknown venue {venue!r}; expected one of {', '.join(self._ids)}"
            )
        return venue

    def _check_exchange(self, venue: _Venue) -> None:
        """Fail at construction on an id ccxt does not know or one without candles."""
        if venue.id not in ccxt.exchanges:
            raise MarketDataError(f"unknown ccxt exchange {venue.id!r}")
        probe = getattr(ccxt, venue.id)(venue.config)  # no request is made
        try:
            if not probe.has.get("fetchOHLCV"):
                raise MarketDataError(f"{venue.id} serves no candles (fetchOHLCV) through ccxt")
            if (
                self._wanted is None
                and venue.id == self._ids[0]
                and not probe.has.get("fetchTickers")
            ):
                raise MarketDataError(f"{venue.id} has no fetchTickers: name the symbols")
        finally:
            probe.close()

    def _exchange(self, venue: str) -> Exchange:
        """This thread's instance for `venue`, with the venue's markets."""
        own: dict[str, Exchange] = self._local.__dict__.setdefault("exchanges", {})
        exchange = own.get(venue)
        if exchange is None:
            exchange = own[venue] = self._new_exchange(venue)
        if not exchange.markets:
            exchange.set_markets_from_exchange(self._loaded(venue))
        return exchange

    def _loaded(self, venue: str) -> Exchange:
        """The instance holding `venue`'s markets, loading them the first time; a failed
        load leaves nothing behind, so the next call tries again."""
        state = self._venues[venue]
        with state.lock:
            if state.loaded is None:
                state.failed.check(self._load_retry)
                loader = self._new_exchange(venue)
                try:
                    self._call(venue, "markets", lambda: loader.load_markets(), loader)
                except MarketDataError as exc:
                    state.failed.note(exc)
                    raise
                state.loaded = loader
            return state.loaded

    def _new_exchange(self, venue: str) -> Exchange:
        state = self._venues[venue]
        config = _deep_merge(state.config, self._credentials.get(venue, {}))
        exchange = getattr(ccxt, venue)(config)
        _narrow_market_types(exchange, state.config)
        per_second = 1000.0 / max(float(exchange.rateLimit or 0), 1.0)

        def throttle(cost: float | None = None) -> None:
            tokens = 1.0 if cost is None else float(cost)
            burst = max(per_second * BURST_SECONDS, tokens)
            wait = self._throttle.take(venue, tokens, per_second, burst)
            if wait > self._retry.max_wait:  # a long hold-off (a 418 ban): fail, not hang
                self._throttle.take(venue, -tokens, per_second, burst)  # nothing was sent
                raise RateLimited(f"{venue}: held off for {wait:.1f} s more", wait)
            if wait > 0:
                time.sleep(wait)

        exchange.throttle = throttle  # fetch2 calls it before every request
        return exchange

    # -- requests --------------------------------------------------------------

    def _call(
        self,
        venue: str,
        what: str,
        call: Callable[[], _T],
        exchange: Exchange,
        symbol: str | None = None,
    ) -> _T:
        """`call` (ccxt requests on `exchange`), retried after 429/418 within the budget;
        any failure a MarketDataError naming the venue, with no credentials in it."""
        waited = 0.0
        # `from None` below: the ccxt exception's own text may hold credentials, and a
        # chained cause would print it with any logged traceback.
        for attempt in range(1, self._retry.attempts + 1):
            try:
                return call()
            except _RATE_LIMITED as exc:
                pause = self._rate_limited(venue, exchange, attempt)
                if attempt == self._retry.attempts or waited + pause > self._retry.max_wait:
                    raise RateLimited(self._message(venue, what, exc), pause) from None
                waited += pause
            except ccxt.BadSymbol as exc:
                if symbol is None:
                    raise MarketDataError(self._message(venue, what, exc)) from None
                raise MarketDataError(
                    f"{venue} does not list {symbol} ({self._reason(exc)})"
                ) from None
            except ccxt.BaseError as exc:
                raise MarketDataError(self._message(venue, what, exc)) from None
            except _MALFORMED as exc:
                raise MarketDataError(
                    self._message(venue, f"malformed answer for {what}", exc)
                ) from None
        raise AssertionError("unreachable: RetryBudget.attempts is at least 1")

    def _rate_limited(self, venue: str, exchange: Exchange, attempt: int) -> float:
        """Hold the venue off (for every worker sharing the throttle): the pause."""
        asked = retry_after_seconds(exchange.last_response_headers, self._clock())
        pause = asked if asked is not None else self._retry.backoff * 2 ** (attempt - 1)
        self._throttle.hold_off(venue, pause)
        log.warning(
            "rate_limited",
            source=self.name,
            venue=venue,
            retry_after=asked,
            pause=pause,
            attempt=attempt,
        )
        if self._on_rate_limited is not None:
            self._on_rate_limited(venue)
        return pause

    def _message(self, venue: str, what: str, exc: Exception) -> str:
        return f"{venue}: {what}: {self._reason(exc)}"

    def _reason(self, exc: Exception) -> str:
        """The error's class and ccxt's text (URL, status, body), credentials blanked."""
        text = str(exc)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        if len(text) > _MESSAGE_CHARS:
            text = text[:_MESSAGE_CHARS] + "…"
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

    def __repr__(self) -> str:
        universe = f"top {self._universe_size}" if self._wanted is None else len(self._wanted)
        return (
            f"CcxtMarket(exchanges={list(self._ids)}, symbols={universe}, history={self._history})"
        )
