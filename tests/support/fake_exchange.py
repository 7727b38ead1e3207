"""A fake Binance on loopback, so ccxt's own request and parsing code runs in tests.

It serves the public REST endpoints ccxt's `binance` class reads for market data,
in Binance's documented formats: spot `exchangeInfo`, `ticker/24hr`, `klines`,
`time`; USD-M futures `exchangeInfo`, `fundingRate`, `time`. Data is a pure
function of (symbol, interval, open time, the instance's price factor), so a test
computes what it should receive with `candle` / `funding_rate`. Candles run up to
the fake's clock, the last one still open.

Faults are scripted (`fail`, `delist`, `latency`, `limit_rate`) and every request
is recorded (`requests`, `requests_for`). `ccxt_config` points a ccxt exchange at it.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ccxt

MINUTE_MS = 60_000
INTERVAL_MS = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "8h": 480 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}
FUNDING_MS = INTERVAL_MS["8h"]
LISTED_MS = 1_704_067_200_000  # 2024-01-01: every market has data from here on
KLINES_LIMIT = (500, 1000)  # Binance's default and maximum page
FUNDING_LIMIT = (100, 1000)


@dataclass(frozen=True)
class Coin:
    """A spot market against USDT; `perp` when USD-M futures list its perpetual."""

    base: str
    price: float
    quote_volume: float
    perp: bool
    status: str = "TRADING"

    @property
    def id(self) -> str:
        return f"{self.base}USDT"

    @property
    def symbol(self) -> str:
        return f"{self.base}/USDT"


# Quote volumes far apart, so "top N" has one right answer. LUNA is halted (status
# BREAK): the largest volume, yet not an active market.
COINS = (
    Coin("BTC", 65_000.0, 9.0e9, perp=True),
    Coin("ETH", 3_200.0, 5.0e9, perp=True),
    Coin("SOL", 150.0, 2.0e9, perp=True),
    Coin("XRP", 0.6, 1.0e9, perp=False),
    Coin("DOGE", 0.15, 5.0e8, perp=True),
    Coin("ADA", 0.45, 2.5e8, perp=False),
    Coin("LUNA", 0.0001, 9.9e9, perp=False, status="BREAK"),
)


@dataclass(frozen=True)
class Candle:
    """One kline as ccxt parses it: open time in ms, then floats."""

    time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class Fault:
    """An answer to send instead of the real one."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


def too_many_requests(retry_after: str | None = "1") -> Fault:
    """Binance's 429: the request weight is spent; Retry-After in seconds."""
    body = json.dumps({"code": -1003, "msg": "Too many requests; current limit is 6000."})
    return Fault(429, body, () if retry_after is None else (("Retry-After", retry_after),))


def banned(retry_after: str = "120") -> Fault:
    """Binance's 418: the IP is banned for having gone on after 429s."""
    body = json.dumps({"code": -1003, "msg": "Way too many requests; IP banned."})
    return Fault(418, body, (("Retry-After", retry_after),))


def server_error(status: int = 503) -> Fault:
    """A gateway's HTML error page."""
    return Fault(status, "<html><body>Service Unavailable</body></html>", (), "text/html")


def malformed() -> Fault:
    """A 200 whose body is cut short: not JSON."""
    return Fault(200, '[[1704067200000,"65000.0","65100.0"', (), "application/json")


def invalid_symbol() -> Fault:
    return Fault(400, json.dumps({"code": -1121, "msg": "Invalid symbol."}))


@dataclass(frozen=True)
class Recorded:
    """One request as the fake saw it; `at` is time.monotonic() on arrival, header
    names are lower case."""

    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    at: float
    status: int


@dataclass
class _Scripted:
    fault: Fault
    path: str | None
    remaining: int | None  # None: until cleared


def ccxt_config(base_url: str, exchange_id: str = "binance") -> dict[str, Any]:
    """The `config` entry that sends every API group of `exchange_id` to `base_url`."""
    urls = getattr(ccxt, exchange_id)().urls["api"]
    return {
        exchange_id: {"urls": {"api": {k: base_url + urlsplit(v).path for k, v in urls.items()}}}
    }


def _wave(k: int, seed: int) -> float:
    return 0.02 * math.sin(0.37 * k + seed) + 0.01 * math.sin(0.011 * k + 2 * seed)


def _fmt(value: float) -> str:
    return f"{value:.8f}"


@dataclass
class FakeExchange:
    """A Binance-format exchange on 127.0.0.1; `factor` scales every price."""

    factor: float = 1.0
    coins: Sequence[Coin] = COINS
    clock: Callable[[], float] = time.time
    latency: float = 0.0  # seconds added to every answer
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _recorded: list[Recorded] = field(default_factory=list, repr=False)
    _scripted: list[_Scripted] = field(default_factory=list, repr=False)
    _delisted: set[str] = field(default_factory=set, repr=False)
    _accepted: list[float] = field(default_factory=list, repr=False)  # under the rate limit
    _rate: tuple[int, float, str | None] | None = None
    _server: _Server | None = field(default=None, repr=False)

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeExchange:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-exchange", daemon=True
        ).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the fake exchange is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- scripting -------------------------------------------------------------

    def fail(self, fault: Fault, times: int | None = 1, path: str | None = None) -> None:
        """Answer `fault` to the next `times` requests (to `path`, if given); None: all."""
        with self._lock:
            self._scripted.append(_Scripted(fault, path, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._scripted.clear()
            self._delisted.clear()
            self._rate = None

    def delist(self, symbol: str) -> None:
        """Data endpoints answer -1121 Invalid symbol for `symbol` (an exchange id,
        BTCUSDT), while exchangeInfo still lists it: delisted since markets loaded."""
        with self._lock:
            self._delisted.add(symbol)

    def limit_rate(self, requests: int, window: float, path: str | None = None) -> None:
        """More than `requests` within any `window` seconds (to `path`) answers 429."""
        with self._lock:
            self._rate = (requests, window, path)
            self._accepted.clear()

    # -- what was asked --------------------------------------------------------

    @property
    def requests(self) -> tuple[Recorded, ...]:
        with self._lock:
            return tuple(self._recorded)

    def requests_for(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    # -- the data --------------------------------------------------------------

    def coin(self, symbol_id: str) -> Coin | None:
        return next((c for c in self.coins if symbol_id in (c.id, c.symbol)), None)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def candle(self, symbol: str, interval: str, time_ms: int) -> Candle:
        """The kline of `symbol` (BTC/USDT or BTCUSDT) opening at `time_ms`."""
        coin = self.coin(symbol)
        assert coin is not None, symbol
        k = time_ms // INTERVAL_MS[interval]
        seed = sum(map(ord, coin.base))
        price = coin.price * self.factor
        open_, close = (float(_fmt(price * (1 + _wave(j, seed)))) for j in (k - 1, k))
        return Candle(
            time_ms,
            open_,
            float(_fmt(max(open_, close) * 1.001)),
            float(_fmt(min(open_, close) * 0.999)),
            close,
            float(_fmt(100.0 + k % 17)),
        )

    def last_open_ms(self, interval: str) -> int:
        """Open time of the candle still open at the fake's clock."""
        step = INTERVAL_MS[interval]
        return self.now_ms() // step * step

    def funding_rate(self, symbol: str, time_ms: int) -> float:
        coin = self.coin(symbol)
        assert coin is not None, symbol
        k = time_ms // FUNDING_MS
        return float(_fmt(1e-4 * (1.0 + 3.0 * math.sin(0.5 * k + len(coin.base)))))

    # -- answering -------------------------------------------------------------

    def answer(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, Fault | Any]:
        """(status, JSON value or a Fault) for one request, recorded."""
        arrived = time.monotonic()
        with self._lock:
            fault = self._scripted_fault(path) or self._rate_fault(path, arrived)
        if fault is None:
            status, value = self._route(path, query)
        else:
            status, value = fault.status, fault
        with self._lock:
            self._recorded.append(Recorded(path, dict(query), dict(headers), arrived, status))
        if self.latency > 0:
            time.sleep(self.latency)  # a slow exchange, not a wait for a condition
        return status, value

    def _scripted_fault(self, path: str) -> Fault | None:
        for entry in self._scripted:
            if entry.path in (None, path):
                if entry.remaining is not None:
                    entry.remaining -= 1
                    if entry.remaining <= 0:
                        self._scripted.remove(entry)
                return entry.fault
        return None

    def _rate_fault(self, path: str, arrived: float) -> Fault | None:
        if self._rate is None or self._rate[2] not in (None, path):
            return None
        limit, window, _ = self._rate
        recent = [at for at in self._accepted if at > arrived - window]
        if len(recent) < limit:
            self._accepted.append(arrived)
            return None
        return too_many_requests(str(math.ceil(min(recent) + window - arrived)))

    def _route(self, path: str, query: Mapping[str, str]) -> tuple[int, Any]:
        routes: dict[str, Callable[[Mapping[str, str]], tuple[int, Any]]] = {
            "/api/v3/ping": lambda q: (200, {}),
            "/api/v3/time": lambda q: (200, {"serverTime": self.now_ms()}),
            "/fapi/v1/time": lambda q: (200, {"serverTime": self.now_ms()}),
            "/api/v3/exchangeInfo": self._spot_info,
            "/fapi/v1/exchangeInfo": self._futures_info,
            "/api/v3/ticker/24hr": self._tickers,
            "/api/v3/klines": self._klines,
            "/fapi/v1/fundingRate": self._funding,
        }
        route = routes.get(path)
        if route is None:
            return 404, Fault(404, "<html><body>Not Found</body></html>", (), "text/html")
        return route(query)

    def _spot_info(self, query: Mapping[str, str]) -> tuple[int, Any]:
        return 200, {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 6000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
                 "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [_spot_symbol(c) for c in self.coins],
        }  # fmt: skip

    def _futures_info(self, query: Mapping[str, str]) -> tuple[int, Any]:
        perps = [_perp_symbol(c) for c in self.coins if c.perp]
        return 200, {
            "timezone": "UTC",
            "serverTime": self.now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": 2400},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": [*perps, _quarterly_symbol(self.coins[0])],
        }  # fmt: skip

    def _tickers(self, query: Mapping[str, str]) -> tuple[int, Any]:
        wanted = json.loads(query["symbols"]) if "symbols" in query else None
        now = self.now_ms()
        rows = [
            _ticker(c, c.price * self.factor, now)
            for c in self.coins
            if wanted is None or c.id in wanted
        ]
        if "symbol" in query:
            one = [r for r in rows if r["symbol"] == query["symbol"]]
            return (200, one[0]) if one else _error(-1121, "Invalid symbol.")
        return 200, rows

    def _klines(self, query: Mapping[str, str]) -> tuple[int, Any]:
        checked = self._check_symbol(query)
        if checked is not None:
            return checked
        interval = query.get("interval", "")
        if interval not in INTERVAL_MS:
            return _error(-1120, "Invalid interval.")
        limit = int(query.get("limit", KLINES_LIMIT[0]))
        if not 1 <= limit <= KLINES_LIMIT[1]:
            return _error(-1130, "Data sent for parameter 'limit' is not valid.")
        opens = _window(INTERVAL_MS[interval], self.last_open_ms(interval), query, limit)
        return 200, [self._kline(query["symbol"], interval, t) for t in opens]

    def _kline(self, symbol: str, interval: str, time_ms: int) -> list[Any]:
        c = self.candle(symbol, interval, time_ms)
        close_ms = time_ms + INTERVAL_MS[interval] - 1
        quote = _fmt(c.volume * c.close)
        return [
            c.time_ms, _fmt(c.open), _fmt(c.high), _fmt(c.low), _fmt(c.close), _fmt(c.volume),
            close_ms, quote, 42, _fmt(c.volume / 2), _fmt(c.volume * c.close / 2), "0",
        ]  # fmt: skip

    def _funding(self, query: Mapping[str, str]) -> tuple[int, Any]:
        checked = self._check_symbol(query)
        if checked is not None:
            return checked
        coin = self.coin(query["symbol"])
        if coin is None or not coin.perp:
            return _error(-1121, "Invalid symbol.")
        limit = int(query.get("limit", FUNDING_LIMIT[0]))
        if not 1 <= limit <= FUNDING_LIMIT[1]:
            return _error(-1130, "Data sent for parameter 'limit' is not valid.")
        last = self.now_ms() // FUNDING_MS * FUNDING_MS
        times = _window(FUNDING_MS, last, query, limit)
        return 200, [
            {
                "symbol": coin.id,
                "fundingTime": t,
                "fundingRate": _fmt(self.funding_rate(coin.id, t)),
                "markPrice": _fmt(coin.price * self.factor),
            }
            for t in times
        ]

    def _check_symbol(self, query: Mapping[str, str]) -> tuple[int, Any] | None:
        symbol = query.get("symbol", "")
        with self._lock:
            delisted = symbol in self._delisted
        if delisted or self.coin(symbol) is None or "/" in symbol:
            return _error(-1121, "Invalid symbol.")
        return None


def _window(step: int, last: int, query: Mapping[str, str], limit: int) -> list[int]:
    """Binance's paging: from startTime forward, else the latest up to endTime."""
    first = -(-LISTED_MS // step) * step
    end = min(last, int(query["endTime"]) // step * step) if "endTime" in query else last
    if "startTime" in query:
        start = max(first, -(-int(query["startTime"]) // step) * step)
        return list(range(start, end + 1, step))[:limit]
    return list(range(max(first, end - (limit - 1) * step), end + 1, step))


def _error(code: int, message: str) -> tuple[int, Any]:
    return 400, {"code": code, "msg": message}


def _filters(coin: Coin) -> list[dict[str, Any]]:
    tick = _fmt(coin.price / 100_000)
    return [
        {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000.00000000",
         "tickSize": tick},
        {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000",
         "stepSize": "0.00001000"},
        {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
         "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
    ]  # fmt: skip


def _spot_symbol(coin: Coin) -> dict[str, Any]:
    return {
        "symbol": coin.id,
        "status": coin.status,
        "baseAsset": coin.base,
        "baseAssetPrecision": 8,
        "quoteAsset": "USDT",
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": True,
        "filters": _filters(coin),
        "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _perp_symbol(
    coin: Coin, contract: str = "PERPETUAL", delivery: int = 4133404800000
) -> dict[str, Any]:
    return {
        "symbol": coin.id if contract == "PERPETUAL" else f"{coin.id}_250328",
        "pair": coin.id,
        "contractType": contract,
        "deliveryDate": delivery,
        "onboardDate": LISTED_MS,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": coin.base,
        "quoteAsset": "USDT",
        "marginAsset": "USDT",
        "pricePrecision": 2,
        "quantityPrecision": 3,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "maxMoveOrderLimit": 10000,
        "filters": _filters(coin),
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
    }


def _quarterly_symbol(coin: Coin) -> dict[str, Any]:
    """A delivery future on the same pair: not the perpetual funding is read from."""
    return _perp_symbol(coin, "CURRENT_QUARTER", 1743148800000)


def _ticker(coin: Coin, price: float, now_ms: int) -> dict[str, Any]:
    return {
        "symbol": coin.id,
        "priceChange": _fmt(price * 0.01),
        "priceChangePercent": "1.000",
        "weightedAvgPrice": _fmt(price),
        "prevClosePrice": _fmt(price * 0.99),
        "lastPrice": _fmt(price),
        "lastQty": "0.01000000",
        "bidPrice": _fmt(price * 0.9999),
        "bidQty": "1.00000000",
        "askPrice": _fmt(price * 1.0001),
        "askQty": "1.00000000",
        "openPrice": _fmt(price * 0.99),
        "highPrice": _fmt(price * 1.02),
        "lowPrice": _fmt(price * 0.98),
        "volume": _fmt(coin.quote_volume / price),
        "quoteVolume": _fmt(coin.quote_volume),
        "openTime": now_ms - 86_400_000,
        "closeTime": now_ms,
        "firstId": 1,
        "lastId": 1000,
        "count": 1000,
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops a burst of 16 connects, and the dropped ones
    # retry a second later: the delay would look like throttling.
    request_queue_size = 128
    fake: FakeExchange


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as ccxt's requests Session expects

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        assert isinstance(self.server, _Server)
        fake = self.server.fake
        try:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, value = fake.answer(parts.path, query, headers)
        except Exception as exc:  # a bug in the fake: say so rather than hang the client
            status, value = 500, Fault(500, f"fake exchange error: {exc!r}", (), "text/plain")
        fault = value if isinstance(value, Fault) else Fault(status, json.dumps(value))
        self._send(fault)

    def _send(self, fault: Fault) -> None:
        body = fault.body.encode()
        self.send_response(fault.status)
        self.send_header("Content-Type", fault.content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in fault.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are recorded by the fake; stderr stays quiet


@contextmanager
def running(fake: FakeExchange | None = None) -> Iterator[FakeExchange]:
    """A started fake exchange, stopped on exit."""
    fake = (fake or FakeExchange()).start()
    try:
        yield fake
    finally:
        fake.stop()
