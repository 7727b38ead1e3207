"""Scans of a real exchange's protocol: gunicorn with 4 workers and ccxt, pointed at a
fake Binance on loopback. Each series is fetched once for the whole deployment, the
exchange's rate limit holds across the workers, and an exchange that errors or
rate-limits costs strategies, never a scan that hangs."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ccxt
import pytest
import requests

from oppscan.client import Client
from tests.support.fake_exchange import FakeExchange, ccxt_config, server_error
from tests.support.server import GunicornServer

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT", "DOGE/USDT", "ADA/USDT")
PERPETUALS = 4  # BTC, ETH, SOL and DOGE have one: funding for those only
RATE_LIMIT_MS = 200  # the exchange's spacing: 5 tokens a second for the deployment
TOKENS_PER_SECOND = 1000 / RATE_LIMIT_MS
BURST = TOKENS_PER_SECOND  # one second's worth


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    exchange = FakeExchange().start()
    yield exchange
    exchange.stop()


def serve(redis_url: str, tmp_path: Path, fake: FakeExchange, **env: str) -> GunicornServer:
    config = ccxt_config(fake.url)
    config["binance"]["rateLimit"] = RATE_LIMIT_MS
    settings = {
        "OPPSCAN_MARKET": "ccxt:binance",
        "OPPSCAN_SYMBOLS": ",".join(SYMBOLS),
        "OPPSCAN_CCXT_CONFIG": json.dumps(config),
        **env,
    }
    return GunicornServer(redis_url, tmp_path, workers=4, env=settings).start(60)


@pytest.fixture
def server(redis_url: str, tmp_path: Path, fake: FakeExchange) -> Iterator[GunicornServer]:
    started = serve(redis_url, tmp_path, fake)
    yield started
    started.stop()


def start_scan(server: GunicornServer, user: str, body: dict[str, Any]) -> str:
    with Client(server.url, server.token(user), spread=True, retries=0) as client:
        return client.discover(**body).scan_id


def results(server: GunicornServer, user: str, scan_id: str) -> Mapping[str, Any]:
    """The scan's results once it is finished (polled from any worker)."""
    with Client(server.url, server.token(user), spread=True) as client:
        return client.scan(scan_id).wait(timeout=90, interval=0.05).body


def test_eight_scans_on_four_workers_fetch_each_series_once(
    server: GunicornServer, fake: FakeExchange
) -> None:
    """Eight users scan the same universe at once: every series is fetched once in
    total, and the scans say how they had each one."""
    users = [f"user{i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda u: start_scan(server, u, {"timeframe": "1h"}), users))
    bodies = [results(server, user, scan_id) for user, scan_id in zip(users, ids, strict=True)]
    assert ["complete"] * 8 == [b["status"] for b in bodies]
    assert len(SYMBOLS) == len(fake.requests_for("/api/v3/klines"))
    assert PERPETUALS == len(fake.requests_for("/fapi/v1/fundingRate"))
    markets = [b["metadata"]["market"] for b in bodies]
    series = len(SYMBOLS) * 2  # bars and funding of each symbol; one venue
    assert [series] * 8 == [m["series"] for m in markets]
    assert series == sum(m["fetched"] for m in markets)
    assert [0] * 8 == [m["failed"] for m in markets]
    assert all(m["source"] == "ccxt:binance" for m in markets)
    performance = bodies[0]["strategy_performance"]
    assert "skipped" == performance["cross_venue_arbitrage"]["status"]  # one venue only
    assert "ok" == performance["funding_rate_arbitrage"]["status"]


def request_cost(path: str) -> float:
    """What ccxt counts a request to `path` as (Binance's weights, in tokens)."""
    api = ccxt.binance().describe()["api"]
    group, endpoint = (
        ("fapiPublic", path.removeprefix("/fapi/v1/"))
        if path.startswith("/fapi/v1/")
        else ("public", path.removeprefix("/api/v3/"))
    )
    return float(api[group]["get"][endpoint].get("cost", 1))


def test_the_exchange_rate_limit_holds_across_workers(
    server: GunicornServer, fake: FakeExchange
) -> None:
    """Four workers load the exchange's markets, then four scans of different
    timeframes ask for 24 bar series and the funding: in no second do all the
    workers together send more than the bucket allows (a bucket per worker would
    send four bursts at once)."""
    timeframes = ("1m", "5m", "15m", "4h")
    with ThreadPoolExecutor(4) as pool:
        ids = list(
            pool.map(lambda tf: start_scan(server, f"tf-{tf}", {"timeframe": tf}), timeframes)
        )
    for tf, scan_id in zip(timeframes, ids, strict=True):
        assert "complete" == results(server, f"tf-{tf}", scan_id)["status"]
    sent = sorted((r.at, request_cost(r.path)) for r in fake.requests)
    assert len(SYMBOLS) * len(timeframes) == len(fake.requests_for("/api/v3/klines"))
    allowed = BURST + TOKENS_PER_SECOND + 1  # one token of slack: clocks, HTTP timing
    busiest = max(
        sum(cost for at, cost in sent[i:] if at - start < 1.0) for i, (start, _) in enumerate(sent)
    )
    assert busiest <= allowed, f"{busiest} tokens within one second"
    assert 429 not in {r.status for r in fake.requests}


def test_an_exchange_that_errors_skips_what_needs_it(
    server: GunicornServer, fake: FakeExchange
) -> None:
    """Funding history answers 503: the funding strategy is skipped with the reason,
    every other strategy runs, and the metric counts the errors."""
    fake.fail(server_error(503), times=None, path="/fapi/v1/fundingRate")
    body = results(server, "ana", start_scan(server, "ana", {"timeframe": "1h"}))
    assert "complete" == body["status"]
    funding = body["strategy_performance"]["funding_rate_arbitrage"]
    assert "skipped" == funding["status"]
    assert "binance" in funding["reason"]
    assert PERPETUALS == body["metadata"]["market"]["failed"]
    assert "ok" == body["strategy_performance"]["momentum"]["status"]
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'oppscan_market_fetches_total{outcome="error",source="ccxt:binance"}' in metrics


def test_an_exchange_that_fails_every_fetch_fails_the_scan_naming_it(
    server: GunicornServer, fake: FakeExchange
) -> None:
    """Every data request answers 503: the scan ends `failed`, its error names the source."""
    fake.fail(server_error(503), times=None, path="/api/v3/klines")
    fake.fail(server_error(503), times=None, path="/fapi/v1/fundingRate")
    body = results(server, "ben", start_scan(server, "ben", {"timeframe": "4h"}))
    assert "failed" == body["status"]
    assert body["error"].startswith("no market data from ccxt:binance: binance")


def test_unknown_symbols_are_refused_with_the_list_at_hand(server: GunicornServer) -> None:
    """A symbol the deployment does not scan is a 400 naming it; /symbols lists the rest."""
    headers = {"Authorization": f"Bearer {server.token('ana')}"}
    listed = requests.get(f"{server.url}/api/v1/symbols", headers=headers, timeout=10).json()
    assert sorted(SYMBOLS) == listed["symbols"]
    resp = requests.post(
        f"{server.url}/api/v1/opportunities/discover",
        json={"symbols": ["BTC/USDT", "NOPE/USDT"]},
        headers=headers,
        timeout=10,
    )
    assert (400, "unknown_symbol") == (resp.status_code, resp.json()["error"])
    assert "NOPE/USDT" in resp.json()["detail"]
