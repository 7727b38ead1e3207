"""oppscan.client against scripted answers (httpx.MockTransport): what it sends back,
how it waits, what it raises."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from oppscan.client import Client, RateLimited, Unavailable

SCAN = "scan_" + "a" * 32
STATUS = {
    "scan_id": SCAN,
    "status": "scanning",
    "progress": {
        "strategies_completed": 1,
        "total_strategies": 2,
        "percentage": 50.0,
        "opportunities_found_so_far": 3,
    },
    "created_at": "2026-01-01T00:00:00.000Z",
    "updated_at": "2026-01-01T00:00:01.000Z",
    "completed_at": None,
}


def client(answer: Callable[[httpx.Request], httpx.Response], **options: object) -> Client:
    waits: list[float] = []
    made = Client(
        "http://oppscan.test",
        "t",
        transport=httpx.MockTransport(answer),
        sleep=waits.append,
        **options,  # type: ignore[arg-type]
    )
    made.waits = waits  # type: ignore[attr-defined]
    return made


def test_a_weak_tag_is_sent_back_as_it_came() -> None:
    """A proxy that weakens tags (W/"x") still gets them back, so polls get 304s."""
    sent: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("If-None-Match"))
        if request.headers.get("If-None-Match") == 'W/"abc"':
            return httpx.Response(304, headers={"ETag": 'W/"abc"'})
        return httpx.Response(200, json=STATUS, headers={"ETag": 'W/"abc"'})

    scan = client(answer).scan(SCAN)
    first, second = scan.status(), scan.status()
    assert [None, 'W/"abc"'] == sent
    assert first == second


def test_a_503_is_waited_out_as_told_then_raised_past_the_retries() -> None:
    """Each 503 waits its Retry-After; past `retries` it is raised with it."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": "store_unavailable", "detail": "down"}
        return httpx.Response(503, json=body, headers={"Retry-After": "2"})

    api = client(answer, retries=2)
    with pytest.raises(Unavailable) as raised:
        api.scan(SCAN).status()
    assert (2.0, "store_unavailable") == (raised.value.retry_after, raised.value.code)
    assert [2.0, 2.0] == api.waits  # type: ignore[attr-defined]


def test_a_429_names_the_wait() -> None:
    """A 429 that outlasts the retries is RateLimited with its Retry-After."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": "rate_limited", "detail": "slow down"}
        return httpx.Response(429, content=json.dumps(body), headers={"Retry-After": "7",
                              "content-type": "application/json"})  # fmt: skip

    with pytest.raises(RateLimited) as raised:
        client(answer, retries=0).discover()
    assert (7.0, "slow down") == (raised.value.retry_after, raised.value.detail)


def test_a_wait_longer_than_max_wait_is_not_waited() -> None:
    """Retry-After 120 with max_wait 30: raised at once, with the wait it asked for."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": "rate_limited", "detail": "later"}
        return httpx.Response(429, json=body, headers={"Retry-After": "120"})

    api = client(answer, max_wait=30.0)
    with pytest.raises(RateLimited) as raised:
        api.discover()
    assert (120.0, []) == (raised.value.retry_after, api.waits)  # type: ignore[attr-defined]


def test_wait_keeps_to_its_timeout_through_outages() -> None:
    """A store that stays down: wait() gives up at its timeout, not after every retry."""

    def answer(request: httpx.Request) -> httpx.Response:
        body = {"error": "store_unavailable", "detail": "down"}
        return httpx.Response(503, json=body, headers={"Retry-After": "1"})

    api = client(answer, retries=5)
    with pytest.raises(TimeoutError):
        api.scan(SCAN).wait(timeout=0.5)
    assert [] == api.waits  # type: ignore[attr-defined]
