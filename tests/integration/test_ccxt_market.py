"""The ccxt market against a fake Binance on loopback: ccxt's own request building and
parsing run, and the fake scripts the faults real exchanges have."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from oppscan.market.base import MarketDataError, RateLimited
from oppscan.market.ccxt_source import CcxtMarket, RetryBudget
from oppscan.market.throttle import LocalThrottle
from oppscan.processes import free_port
from tests.support.fake_exchange import (
    FUNDING_MS,
    INTERVAL_MS,
    FakeExchange,
    Fault,
    banned,
    ccxt_config,
    malformed,
    running,
    server_error,
    too_many_requests,
)

NOW = 1_767_226_834.5  # 2026-01-01T00:20:34.5Z: inside a 1h candle, 34.5 s into a 1m one
KLINES = "/api/v3/klines"


class RecordingThrottle:
    """A Throttle that never waits and remembers what it was told."""

    def __init__(self) -> None:
        self.takes: list[tuple[str, float, float, float]] = []
        self.holds: list[tuple[str, float]] = []

    def take(self, venue: str, cost: float, per_second: float, burst: float) -> float:
        self.takes.append((venue, cost, per_second, burst))
        return 0.0

    def hold_off(self, venue: str, seconds: float) -> None:
        self.holds.append((venue, seconds))


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with running(FakeExchange(clock=lambda: NOW)) as started:
        yield started


@pytest.fixture
def throttle() -> RecordingThrottle:
    return RecordingThrottle()


def make(fake: FakeExchange, throttle: Any, **kwargs: Any) -> CcxtMarket:
    """A one-venue market on the fake, 5 bars a series, at the fake's time."""
    options: dict[str, Any] = {
        "exchanges": ["binance"],
        "config": ccxt_config(fake.url),
        "history": 5,
        "throttle": throttle,
        "clock": lambda: NOW,
        **kwargs,
    }
    return CcxtMarket(**options)


def closed_opens(fake: FakeExchange, interval: str, count: int) -> list[int]:
    """Open times (ms) of the last `count` closed candles at the fake's clock."""
    step = INTERVAL_MS[interval]
    last = fake.last_open_ms(interval)
    return [last - step * k for k in range(count, 0, -1)]


# -- the universe ---------------------------------------------------------------------


def test_the_universe_is_the_top_by_quote_volume(fake: FakeExchange, throttle: Any) -> None:
    """The primary's 3 largest active spot markets by quote volume, sorted; halted LUNA is out."""
    source = make(fake, throttle, universe_size=3)
    assert ["BTC/USDT", "ETH/USDT", "SOL/USDT"] == list(source.symbols())
    bigger = make(fake, throttle, universe_size=60)
    assert ["ADA/USDT", "BTC/USDT", "DOGE/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"] == list(
        bigger.symbols()
    )


def test_loading_markets_asks_for_spot_and_linear_only(fake: FakeExchange, throttle: Any) -> None:
    """load_markets reads spot and USD-M exchangeInfo once each: no inverse, no margin, no
    currencies, even with API keys set; the universe adds one tickers request."""
    credentials = {"binance": {"apiKey": "key-AAAA", "secret": "secret-BBBB"}}
    source = make(fake, throttle, credentials=credentials)
    source.symbols()
    source.symbols()
    assert ["/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo", "/api/v3/ticker/24hr"] == [
        r.path for r in fake.requests
    ]
    assert not any("x-mbx-apikey" in r.headers for r in fake.requests)


def test_named_symbols_not_listed_are_dropped(fake: FakeExchange, throttle: Any) -> None:
    """A named symbol no venue lists is left out with a symbol_not_listed warning."""
    source = make(fake, throttle, symbols=["SOL/USDT", "NOPE/USDT", "BTC/USDT"])
    with capture_logs() as logs:
        assert ["BTC/USDT", "SOL/USDT"] == list(source.symbols())
    dropped = [e["symbol"] for e in logs if e["event"] == "symbol_not_listed"]
    assert ["NOPE/USDT"] == dropped


def test_no_listed_symbol_is_an_error(fake: FakeExchange, throttle: Any) -> None:
    """When no named symbol is listed anywhere, symbols() raises, naming the source."""
    source = make(fake, throttle, symbols=["NOPE/USDT", "NADA/USDT"])
    with pytest.raises(MarketDataError, match=r"none of NOPE/USDT, NADA/USDT .*ccxt:binance"):
        source.symbols()


def test_a_failed_universe_is_tried_again(fake: FakeExchange, throttle: Any) -> None:
    """An exchange down at first use: MarketDataError naming it; the next call loads it."""
    source = make(fake, throttle, universe_size=2, load_retry=0.0)
    fake.fail(server_error(503), path="/api/v3/exchangeInfo")
    with pytest.raises(MarketDataError, match=r"binance: markets: ExchangeNotAvailable"):
        source.symbols()
    assert ["BTC/USDT", "ETH/USDT"] == list(source.symbols())


def test_a_failed_load_answers_at_once_for_a_while(fake: FakeExchange, throttle: Any) -> None:
    """Threads asking while the exchange is down get the failure at once, for
    `load_retry` seconds, instead of each waiting for the exchange in turn."""
    source = make(fake, throttle, universe_size=2, load_retry=60.0)
    fake.fail(server_error(503), times=None, path="/api/v3/exchangeInfo")
    for _ in range(3):
        with pytest.raises(MarketDataError, match=r"binance: markets: ExchangeNotAvailable"):
            source.symbols()
        with pytest.raises(MarketDataError, match=r"binance: markets: ExchangeNotAvailable"):
            source.bars("BTC/USDT", "1h")
    assert 1 == len(fake.requests_for("/api/v3/exchangeInfo"))


def test_an_unreachable_exchange_is_named(throttle: Any) -> None:
    """Nothing listening at the configured endpoint: a MarketDataError naming the exchange."""
    source = CcxtMarket(
        exchanges=["binance"],
        config=ccxt_config(f"http://127.0.0.1:{free_port()}"),
        throttle=throttle,
    )
    with pytest.raises(MarketDataError, match=r"^binance: markets: (Network|ExchangeNotAvail)"):
        source.symbols()


# -- bars -----------------------------------------------------------------------------


def test_bars_are_the_last_closed_candles(fake: FakeExchange, throttle: Any) -> None:
    """`history` bars, oldest first, ending with the last closed candle, valued as served."""
    bars = make(fake, throttle).bars("ETH/USDT", "1h")
    opens = closed_opens(fake, "1h", 5)
    expected = [fake.candle("ETH/USDT", "1h", t) for t in opens]
    assert [t // 1000 for t in opens] == bars.time.tolist()
    assert [c.open for c in expected] == bars.open.tolist()
    assert [c.high for c in expected] == bars.high.tolist()
    assert [c.low for c in expected] == bars.low.tolist()
    assert [c.close for c in expected] == bars.close.tolist()
    assert [c.volume for c in expected] == bars.volume.tolist()
    assert ("ETH/USDT", "binance", "1h") == (bars.symbol, bars.venue, bars.timeframe)


def test_bars_are_read_only_typed_arrays(fake: FakeExchange, throttle: Any) -> None:
    """int64 seconds and float64 prices, none writeable, like the other sources."""
    bars = make(fake, throttle).bars("BTC/USDT", "15m")
    assert np.int64 == bars.time.dtype
    arrays = (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume)
    assert [False] * 6 == [a.flags.writeable for a in arrays]
    assert {np.dtype(np.float64)} == {a.dtype for a in arrays[1:]}


def test_a_timeframe_the_exchange_lacks(fake: FakeExchange) -> None:
    """A timeframe the exchange's ccxt class does not offer: MarketDataError, no klines asked."""
    config = ccxt_config(fake.url)
    config["binance"]["timeframes"] = {"4h": None}  # as if binance had no 4h candles
    with pytest.raises(MarketDataError, match=r"^binance has no 4h candles$"):
        make(fake, RecordingThrottle(), config=config).bars("BTC/USDT", "4h")
    assert [] == fake.requests_for(KLINES)


def test_a_page_that_holds_the_history_is_one_request(fake: FakeExchange, throttle: Any) -> None:
    """history 5: one klines request for the latest 6 (the open one is dropped)."""
    make(fake, throttle).bars("BTC/USDT", "1m")
    asked = fake.requests_for(KLINES)
    assert [("BTCUSDT", "1m", "6")] == [
        (r.query["symbol"], r.query["interval"], r.query["limit"]) for r in asked
    ]
    assert "startTime" not in asked[0].query


def test_a_long_history_is_paged_forward(fake: FakeExchange, throttle: Any) -> None:
    """history 2500 on a 1000-bar page: three requests from 2500 bars ago, every bar once."""
    bars = make(fake, throttle, history=2500).bars("SOL/USDT", "1m")
    opens = closed_opens(fake, "1m", 2500)
    assert [t // 1000 for t in opens] == bars.time.tolist()
    assert fake.candle("SOL/USDT", "1m", opens[-1]).close == bars.close[-1]
    asked = fake.requests_for(KLINES)
    assert [200, 200, 200] == [r.status for r in asked]
    assert [str(opens[0]), str(opens[1000]), str(opens[2000])] == [
        r.query["startTime"] for r in asked
    ]
    assert {"1000"} == {r.query["limit"] for r in asked}


def test_a_symbol_the_venue_does_not_list(fake: FakeExchange, throttle: Any) -> None:
    """Not in the venue's markets: MarketDataError naming venue and symbol, no klines asked."""
    with pytest.raises(MarketDataError, match=r"^binance does not list NOPE/USDT$"):
        make(fake, throttle).bars("NOPE/USDT", "1h")
    assert [] == fake.requests_for(KLINES)


def test_a_symbol_the_exchange_refuses(fake: FakeExchange, throttle: Any) -> None:
    """Listed when markets loaded, now -1121 Invalid symbol: 'does not list', with ccxt's error."""
    fake.delist("ETHUSDT")
    with pytest.raises(MarketDataError, match=r"^binance does not list ETH/USDT \(BadSymbol"):
        make(fake, throttle).bars("ETH/USDT", "1h")


def test_a_server_error_names_the_exchange(fake: FakeExchange, throttle: Any) -> None:
    """A 502 from the exchange: MarketDataError naming the exchange and ccxt's error class."""
    source = make(fake, throttle)
    source.symbols()
    fake.fail(server_error(502), path=KLINES)
    with pytest.raises(
        MarketDataError, match=r"^binance: BTC/USDT 1h bars: ExchangeNotAvailable: .* 502"
    ):
        source.bars("BTC/USDT", "1h")


def test_a_timeout_names_the_exchange(fake: FakeExchange, throttle: Any) -> None:
    """An answer slower than timeout_ms: MarketDataError naming the exchange, RequestTimeout."""
    source = make(fake, throttle, timeout_ms=100)
    source.symbols()
    fake.latency = 0.5
    with pytest.raises(MarketDataError, match=r"^binance: BTC/USDT 1h bars: RequestTimeout"):
        source.bars("BTC/USDT", "1h")


def test_a_malformed_answer_is_an_error(fake: FakeExchange, throttle: Any) -> None:
    """A 200 that is not JSON (ccxt would parse it as empty bars): MarketDataError."""
    source = make(fake, throttle)
    source.symbols()
    fake.fail(malformed(), path=KLINES)
    with pytest.raises(MarketDataError, match=r"^binance: malformed answer for BTC/USDT 1h bars"):
        source.bars("BTC/USDT", "1h")


def test_credentials_stay_out_of_errors(fake: FakeExchange, throttle: Any) -> None:
    """An error body that echoes the API key is reported with the key blanked."""
    credentials = {"binance": {"apiKey": "key-AAAA", "secret": "secret-BBBB"}}
    source = make(fake, throttle, credentials=credentials)
    source.symbols()
    fake.fail(Fault(401, '{"code":-2014,"msg":"API-key key-AAAA secret-BBBB rejected."}'))
    with pytest.raises(MarketDataError) as caught:
        source.bars("BTC/USDT", "1h")
    assert "***" in str(caught.value)
    assert "key-AAAA" not in str(caught.value)
    assert "secret-BBBB" not in str(caught.value)
    assert "key-AAAA" not in repr(source)


def test_two_exchanges_are_two_venues(throttle: Any) -> None:
    """binance and binanceus (prices 1% higher): venues in order, each its own bars."""
    us = FakeExchange(factor=1.01, clock=lambda: NOW)
    with running(FakeExchange(clock=lambda: NOW)) as main, running(us):
        source = CcxtMarket(
            exchanges=["binance", "binanceus"],
            config={**ccxt_config(main.url), **ccxt_config(us.url, "binanceus")},
            history=3,
            throttle=throttle,
            clock=lambda: NOW,
        )
        assert ("binance", "binanceus") == tuple(source.venues())
        last = closed_opens(main, "4h", 1)[0]
        assert main.candle("BTC/USDT", "4h", last).close == source.bars("BTC/USDT", "4h").close[-1]
        assert (
            us.candle("BTC/USDT", "4h", last).close
            == source.bars("BTC/USDT", "4h", venue="binanceus").close[-1]
        )
        assert 1 == len(main.requests_for(KLINES))
        assert ["/api/v3/exchangeInfo", KLINES] == [r.path for r in us.requests]


# -- funding --------------------------------------------------------------------------


def test_funding_history_of_a_perpetual(fake: FakeExchange, throttle: Any) -> None:
    """BTC/USDT: the 90 latest 8h rates of BTCUSDT's perpetual, oldest first, read-only."""
    rates = make(fake, throttle).funding_rates("BTC/USDT")
    assert rates is not None
    last = int(NOW * 1000) // FUNDING_MS * FUNDING_MS
    times = [last - FUNDING_MS * k for k in range(89, -1, -1)]
    assert [fake.funding_rate("BTCUSDT", t) for t in times] == rates.tolist()
    assert not rates.flags.writeable
    assert ["BTCUSDT"] == [r.query["symbol"] for r in fake.requests_for("/fapi/v1/fundingRate")]


def test_no_perpetual_means_no_funding(fake: FakeExchange, throttle: Any) -> None:
    """XRP/USDT has no perpetual on the fake: None, and no funding request."""
    assert None is make(fake, throttle).funding_rates("XRP/USDT")
    assert [] == fake.requests_for("/fapi/v1/fundingRate")


def test_a_primary_without_funding_history_gives_none(throttle: Any) -> None:
    """binanceus has no fetchFundingRateHistory in ccxt: None."""
    with running(FakeExchange(clock=lambda: NOW)) as us:
        source = CcxtMarket(
            exchanges=["binanceus"],
            config=ccxt_config(us.url, "binanceus"),
            throttle=throttle,
            clock=lambda: NOW,
        )
        assert None is source.funding_rates("BTC/USDT")


# -- rate limits ----------------------------------------------------------------------


def test_a_429_holds_off_for_retry_after_and_retries(fake: FakeExchange, throttle: Any) -> None:
    """429 with Retry-After: 7: hold_off(7), on_rate_limited told, the retry succeeds."""
    told: list[str] = []
    source = make(fake, throttle, on_rate_limited=told.append)
    source.symbols()
    fake.fail(too_many_requests("7"), path=KLINES)
    assert 5 == len(source.bars("BTC/USDT", "1h"))
    assert [("binance", 7.0)] == throttle.holds
    assert ["binance"] == told
    assert [429, 200] == [r.status for r in fake.requests_for(KLINES)]


def test_a_429_without_retry_after_backs_off(fake: FakeExchange, throttle: Any) -> None:
    """No Retry-After: hold-offs double from the budget's backoff."""
    source = make(fake, throttle, retry=RetryBudget(attempts=4, backoff=0.5))
    source.symbols()
    fake.fail(too_many_requests(None), times=3, path=KLINES)
    source.bars("BTC/USDT", "1h")
    assert [0.5, 1.0, 2.0] == [seconds for _, seconds in throttle.holds]


def test_a_persistent_429_is_rate_limited(fake: FakeExchange, throttle: Any) -> None:
    """429 on every try: RateLimited after the budget's attempts, with the last Retry-After."""
    told: list[str] = []
    source = make(fake, throttle, on_rate_limited=told.append, retry=RetryBudget(attempts=3))
    source.symbols()
    fake.fail(too_many_requests("2"), times=None, path=KLINES)
    with pytest.raises(RateLimited, match=r"^binance: BTC/USDT 1h bars: DDoSProtection") as caught:
        source.bars("BTC/USDT", "1h")
    assert 2.0 == caught.value.retry_after
    assert ["binance"] * 3 == told
    assert [429] * 3 == [r.status for r in fake.requests_for(KLINES)]


def test_a_ban_longer_than_the_budget_fails_at_once(fake: FakeExchange) -> None:
    """418 for 120 s, budget 30 s: RateLimited(120) at once; later calls fail without a request."""
    source = make(fake, LocalThrottle(), retry=RetryBudget(max_wait=30.0))
    source.symbols()
    fake.fail(banned("120"), path=KLINES)
    with pytest.raises(RateLimited) as caught:
        source.bars("BTC/USDT", "1h")
    assert 120.0 == caught.value.retry_after
    with pytest.raises(RateLimited, match="held off"):
        source.bars("ETH/USDT", "1h")
    assert [418] == [r.status for r in fake.requests_for(KLINES)]


def test_the_retry_waits_out_the_hold_off(fake: FakeExchange) -> None:
    """With a LocalThrottle, the retry after Retry-After: 0.3 reaches the fake 0.3 s later."""
    source = make(fake, LocalThrottle())
    source.symbols()
    fake.fail(too_many_requests("0.3"), path=KLINES)
    source.bars("BTC/USDT", "1h")
    refused, served = fake.requests_for(KLINES)
    assert (429, 200) == (refused.status, served.status)
    assert served.at - refused.at >= 0.3


# -- throttling and threads -----------------------------------------------------------

RATE_LIMIT_MS = 100  # 10 tokens a second, 10 at most: 25 klines requests (0.4 each)
KLINES_BURST = KLINES_PER_SECOND = 25
WINDOW = 0.3  # seconds: 45 unthrottled requests arrive within ~0.1 s on loopback
FETCHES = 45
JITTER = 4  # requests a window may gain from threads that wake late, then arrive together


class ArmedThrottle:
    """Lets everything through until armed, then is `inner`: markets load without
    spending the tokens the fetches under test are measured against."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.armed = False

    def take(self, venue: str, cost: float, per_second: float, burst: float) -> float:
        return self.inner.take(venue, cost, per_second, burst) if self.armed else 0.0

    def hold_off(self, venue: str, seconds: float) -> None:
        self.inner.hold_off(venue, seconds)


def fetch_all(fake: FakeExchange, inner: Any) -> tuple[list[object], list[str]]:
    """FETCHES series from 16 threads against a fake that answers 429 past a burst and the
    rate in any WINDOW: (each outcome, a Bars or the error; venues told rate-limited)."""
    told: list[str] = []
    config = ccxt_config(fake.url)
    config["binance"]["rateLimit"] = RATE_LIMIT_MS
    throttle = ArmedThrottle(inner)
    symbols = ["ADA/USDT", "BTC/USDT", "DOGE/USDT", "ETH/USDT", "SOL/USDT"]
    source = make(fake, throttle, config=config, symbols=symbols, on_rate_limited=told.append)
    source.symbols()
    throttle.armed = True
    fake.limit_rate(KLINES_BURST + int(KLINES_PER_SECOND * WINDOW) + JITTER, WINDOW, path=KLINES)
    wanted = [(symbols[k % 5], ("1m", "5m", "15m", "1h")[k % 4]) for k in range(FETCHES)]

    def fetch(item: tuple[str, str]) -> object:
        try:
            return source.bars(*item)
        except MarketDataError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(fetch, wanted)), told


def test_the_throttle_keeps_concurrent_fetches_under_the_rate(fake: FakeExchange) -> None:
    """Fetches from 16 threads through a LocalThrottle at the exchange's rate stay within a
    burst plus the rate in any window (+ JITTER): the fake never answers 429."""
    outcomes, told = fetch_all(fake, LocalThrottle())
    assert [] == [o for o in outcomes if isinstance(o, Exception)]
    assert [] == told
    assert [200] * FETCHES == [r.status for r in fake.requests_for(KLINES)]


def test_without_the_throttle_the_fake_refuses(fake: FakeExchange, throttle: Any) -> None:
    """The same fetches through a throttle that never waits draw 429s: the limit bites."""
    _, told = fetch_all(fake, throttle)
    assert told
    assert 429 in {r.status for r in fake.requests_for(KLINES)}


def test_markets_load_once_however_many_threads_ask(fake: FakeExchange, throttle: Any) -> None:
    """16 threads' first fetches at once: one exchangeInfo each for spot and futures."""
    source = make(fake, throttle)
    start = threading.Barrier(16)

    def first_fetch(symbol: str) -> int:
        start.wait(timeout=10)
        return len(source.bars(symbol, "1h"))

    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT"] * 4
    with ThreadPoolExecutor(max_workers=16) as pool:
        assert [5] * 16 == list(pool.map(first_fetch, symbols))
    assert 1 == len(fake.requests_for("/api/v3/exchangeInfo"))
    assert 1 == len(fake.requests_for("/fapi/v1/exchangeInfo"))
    assert 16 == len(fake.requests_for(KLINES))


def test_every_request_goes_through_the_throttle(fake: FakeExchange, throttle: Any) -> None:
    """One take per request sent, at binance's rate: 20 tokens a second, a second's burst."""
    source = make(fake, throttle)
    source.bars("BTC/USDT", "1h")
    source.funding_rates("BTC/USDT")
    assert len(fake.requests) == len(throttle.takes)
    assert {("binance", 20.0, 20.0)} == {(v, rate, burst) for v, _, rate, burst in throttle.takes}
