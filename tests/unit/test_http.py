"""The HTTP layer through falcon's TestClient, on fakes: validation, auth, errors, routing."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import falcon.testing
import jwt
import pytest
import structlog
import structlog.testing

from oppscan import logs
from oppscan.auth import TokenVerifier, issue_token
from oppscan.http import create_app
from oppscan.http.openapi import BEARER_CHALLENGE, openapi_document
from oppscan.market import MarketDataError
from oppscan.model import ScanParams, StrategyResult, now_iso
from oppscan.storage import NewScan
from tests.fakes import FakeStore, FakeStrategy, api_on_fakes
from tests.support.polling import poll_until

SECRET = "unit-test-secret-0123456789abcdef"
GATE = threading.Event()
STRATEGIES = {s.name: s for s in (FakeStrategy("alpha"), FakeStrategy("held", gate=GATE))}
UNKNOWN = "scan_" + "0" * 32


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def client(store: FakeStore) -> Iterator[falcon.testing.TestClient]:
    GATE.clear()
    with api_on_fakes(store, STRATEGIES) as deps:
        yield falcon.testing.TestClient(create_app(deps, TokenVerifier.hmac([SECRET])))
        GATE.set()


def auth(user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, user, 60)}"}


def discover(
    client: falcon.testing.TestClient, body: object, user: str = "alice"
) -> falcon.testing.Result:
    return client.simulate_post("/api/v1/opportunities/discover", json=body, headers=auth(user))


def test_discover_registers_a_scan(client: falcon.testing.TestClient, store: FakeStore) -> None:
    """A valid discover answers 202 with the scan's id and URLs, after the record exists."""
    resp = discover(client, {"strategies": ["alpha", "held"]})
    assert 202 == resp.status_code
    scan_id = resp.json["scan_id"]
    assert scan_id in store.records
    assert f"/api/v1/opportunities/status/{scan_id}" == resp.json["status_url"]
    assert f"/api/v1/opportunities/results/{scan_id}" == resp.json["results_url"]


def test_identical_running_request_joins(client: falcon.testing.TestClient) -> None:
    """The same request by the same user joins the running scan."""
    first = discover(client, {"strategies": ["held"]}).json
    second = discover(client, {"strategies": ["held"]})
    assert (202, first["scan_id"], True) == (
        second.status_code,
        second.json["scan_id"],
        second.json["deduplicated"],
    )


def test_status_of_a_running_scan_comes_from_the_actor(client: falcon.testing.TestClient) -> None:
    """The owning worker answers from its actor, with honest totals, and results say 202."""
    scan_id = discover(client, {"strategies": ["held"]}).json["scan_id"]
    status = client.simulate_get(f"/api/v1/opportunities/status/{scan_id}", headers=auth())
    assert ("actor", "scanning", 1) == (
        status.headers["X-Scan-Source"],
        status.json["status"],
        status.json["progress"]["total_strategies"],
    )
    results = client.simulate_get(f"/api/v1/opportunities/results/{scan_id}", headers=auth())
    assert 202 == results.status_code


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"strategies": ["nope"]}, "unknown_strategy"),
        ({"symbols": ["NOPE"]}, "unknown_symbol"),
        ({"strategies": "alpha"}, "invalid_field"),
        ({"strategies": []}, "invalid_field"),
        ({"timeframe": "7m"}, "invalid_timeframe"),
        ({"force_refresh": "yes"}, "invalid_field"),
        ({"colour": "red"}, "unknown_field"),
        ([1, 2], "invalid_body"),
    ],
)
def test_invalid_bodies_are_clear_400s(
    client: falcon.testing.TestClient, body: object, code: str
) -> None:
    """Each kind of bad body gets a 400 naming what is wrong."""
    resp = discover(client, body)
    assert (400, code) == (resp.status_code, resp.json["error"])


def test_unknown_strategy_detail_lists_the_valid_ones(client: falcon.testing.TestClient) -> None:
    """The 400 for an unknown strategy tells the client which ones exist."""
    assert "alpha, held" in discover(client, {"strategies": ["nope"]}).json["detail"]


@pytest.mark.parametrize("raw", [b"{not json", b'{"timeframe": NaN}', b"\xff\xfe", b"[" * 60000])
def test_malformed_json_is_400(client: falcon.testing.TestClient, raw: bytes) -> None:
    """Malformed JSON, NaN, bad UTF-8 and absurd nesting are all 400 invalid_json."""
    resp = client.simulate_post(
        "/api/v1/opportunities/discover",
        body=raw,
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert (400, "invalid_json") == (resp.status_code, resp.json["error"])


def test_oversized_body_is_413(client: falcon.testing.TestClient) -> None:
    """A body over 64 KiB is refused before it is parsed."""
    resp = client.simulate_post(
        "/api/v1/opportunities/discover",
        body=b" " * (64 * 1024 + 1),
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert (413, "payload_too_large") == (resp.status_code, resp.json["error"])


def test_non_json_body_is_415(client: falcon.testing.TestClient) -> None:
    """Only application/json bodies are accepted."""
    resp = client.simulate_post(
        "/api/v1/opportunities/discover",
        body=b"a=b",
        headers={**auth(), "Content-Type": "text/plain"},
    )
    assert 415 == resp.status_code


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Basic x"}, {"Authorization": "Bearer  "}]
)
def test_missing_token_is_401_with_the_bare_challenge(
    client: falcon.testing.TestClient, headers: dict[str, str]
) -> None:
    """Without a bearer token nothing but health answers: `WWW-Authenticate: Bearer`
    with no error code (RFC 6750, section 3.1)."""
    resp = client.simulate_get(f"/api/v1/opportunities/status/{UNKNOWN}", headers=headers)
    assert (401, "unauthorized", "a bearer token is required", "Bearer") == (
        resp.status_code,
        resp.json["error"],
        resp.json["detail"],
        resp.headers["WWW-Authenticate"],
    )


def refused(client: falcon.testing.TestClient, token: str) -> tuple[int, str, str, str]:
    """Status, `error`, `detail` and `WWW-Authenticate` of a request with `token`."""
    headers = {"Authorization": f"Bearer {token}"}
    resp = client.simulate_get("/api/v1/strategies", headers=headers)
    challenge = resp.headers["WWW-Authenticate"]
    assert re.match(BEARER_CHALLENGE, challenge), challenge  # as the OpenAPI document says
    return resp.status_code, resp.json["error"], resp.json["detail"], challenge


def test_expired_token_is_401_saying_it_expired(client: falcon.testing.TestClient) -> None:
    """An expired token: `invalid_token`, and both the header and the body say `token expired`."""
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 120}, SECRET, "HS256")
    assert (
        401,
        "unauthorized",
        "token expired",
        'Bearer error="invalid_token", error_description="token expired"',
    ) == refused(client, expired)


OTHER_KEYS = issue_token("another-secret-0123456789abcdefgh", "alice")
NO_EXP = jwt.encode({"sub": "alice"}, SECRET, "HS256")


@pytest.mark.parametrize(
    ("token", "why"),
    [
        ("nonsense", "token invalid: Not enough segments"),
        (OTHER_KEYS, "token invalid: no key verifies the signature"),
        (NO_EXP, "token invalid: Token is missing the 'exp' claim"),
    ],
)
def test_invalid_token_is_401_saying_why(
    client: falcon.testing.TestClient, token: str, why: str
) -> None:
    """A token that is not valid: `invalid_token` with the reason, in the header (its `"`
    made `'`, as RFC 6750 requires) and in the body alike."""
    challenge = f'Bearer error="invalid_token", error_description="{why}"'
    assert (401, "unauthorized", why, challenge) == refused(client, token)


def test_token_signed_with_another_key_is_401(client: falcon.testing.TestClient) -> None:
    """A token signed with another secret is refused."""
    headers = {
        "Authorization": f"Bearer {issue_token('another-secret-0123456789abcdefgh', 'alice')}"
    }
    assert 401 == client.simulate_get("/api/v1/strategies", headers=headers).status_code


def test_malformed_scan_id_is_400(client: falcon.testing.TestClient) -> None:
    """A scan id that cannot exist is a 400, not a lookup."""
    resp = client.simulate_get("/api/v1/opportunities/status/scan_XYZ", headers=auth())
    assert (400, "invalid_scan_id") == (resp.status_code, resp.json["error"])


def test_other_users_scan_answers_exactly_as_unknown(client: falcon.testing.TestClient) -> None:
    """Bob sees Alice's scan exactly as he sees a scan that does not exist."""
    scan_id = discover(client, {"strategies": ["held"]}).json["scan_id"]
    for path in ("status", "results"):
        theirs = client.simulate_get(f"/api/v1/opportunities/{path}/{scan_id}", headers=auth("bob"))
        unknown = client.simulate_get(
            f"/api/v1/opportunities/{path}/{UNKNOWN}", headers=auth("bob")
        )
        assert (404, unknown.content) == (theirs.status_code, theirs.content)
        assert {"error": "not_found", "detail": "no such scan"} == theirs.json
    cancel = client.simulate_delete(f"/api/v1/opportunities/scans/{scan_id}", headers=auth("bob"))
    assert 404 == cancel.status_code


def test_wrong_method_is_405_json(client: falcon.testing.TestClient) -> None:
    """A wrong method answers 405 with the JSON error shape."""
    resp = client.simulate_get("/api/v1/opportunities/discover", headers=auth())
    assert (405, "method_not_allowed") == (resp.status_code, resp.json["error"])


def test_every_response_names_its_worker(client: falcon.testing.TestClient) -> None:
    """X-Served-By and X-Request-ID are on successes and errors alike."""
    for resp in (client.simulate_get("/healthz"), client.simulate_get("/nowhere")):
        assert "unit:1" == resp.headers["X-Served-By"]
        assert resp.headers["X-Request-ID"]
    echoed = client.simulate_get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert "abc-123" == echoed.headers["X-Request-ID"]


def test_store_outage_is_503_not_404(client: falcon.testing.TestClient, store: FakeStore) -> None:
    """When the store is down an unknown-to-this-worker scan is 503 with Retry-After."""
    store.outages = 1
    resp = client.simulate_get(f"/api/v1/opportunities/status/{UNKNOWN}", headers=auth())
    assert (503, "store_unavailable") == (resp.status_code, resp.json["error"])
    assert resp.headers["Retry-After"]
    store.outages = 1
    assert 503 == client.simulate_get("/readyz").status_code


def test_cancel_a_running_scan(client: falcon.testing.TestClient) -> None:
    """DELETE cancels the scan; a second DELETE finds it finished (409)."""
    scan_id = discover(client, {"strategies": ["held"]}).json["scan_id"]
    first = client.simulate_delete(f"/api/v1/opportunities/scans/{scan_id}", headers=auth())
    assert ("cancelled", 200) == (first.json["status"], first.status_code)
    again = client.simulate_delete(f"/api/v1/opportunities/scans/{scan_id}", headers=auth())
    assert (409, "already_finished") == (again.status_code, again.json["error"])


def test_strategies_are_listed_with_descriptions(client: falcon.testing.TestClient) -> None:
    """GET /strategies lists every strategy with its description."""
    resp = client.simulate_get("/api/v1/strategies", headers=auth())
    assert ["alpha", "held"] == [s["name"] for s in resp.json["strategies"]]


def test_openapi_document_is_valid_and_served(client: falcon.testing.TestClient) -> None:
    """The OpenAPI document validates as 3.1 and is served without a token."""
    from openapi_spec_validator import validate

    document = json.loads(openapi_document(tuple(sorted(STRATEGIES)), ("SYM0", "SYM1")))
    validate(document)
    assert document == client.simulate_get("/openapi.json").json


def test_rate_limited_discover_is_429_with_retry_after(
    client: falcon.testing.TestClient, store: FakeStore
) -> None:
    """Over the discover rate the answer is 429 rate_limited with Retry-After."""
    store.rate_wait = 17
    resp = discover(client, {"strategies": ["alpha"]})
    assert (429, "rate_limited", "17") == (
        resp.status_code,
        resp.json["error"],
        resp.headers["Retry-After"],
    )


def test_a_discover_whose_answer_was_lost_is_joined_by_its_retry(
    client: falcon.testing.TestClient, store: FakeStore
) -> None:
    """Registered, but the reply timed out (503): the retry joins that scan, no second one."""
    store.applied_then_timeout = {"register"}
    lost = discover(client, {"strategies": ["held"]})
    assert 503 == lost.status_code
    retried = discover(client, {"strategies": ["held"]})
    assert (202, True) == (retried.status_code, retried.json["deduplicated"])
    listed = client.simulate_get("/api/v1/opportunities/scans", headers=auth()).json["scans"]
    assert [retried.json["scan_id"]] == [s["scan_id"] for s in listed]


def test_discover_answers_503_while_the_exchange_cannot_list_its_symbols(
    store: FakeStore,
) -> None:
    """An exchange that cannot say its symbols yet: discover is a 503 with Retry-After,
    not a 500, and /symbols says the same."""

    def unreachable() -> tuple[str, ...]:
        raise MarketDataError("binance: ExchangeNotAvailable: 503")

    with api_on_fakes(store, STRATEGIES, unreachable) as deps:
        client = falcon.testing.TestClient(create_app(deps, TokenVerifier.hmac([SECRET])))
        for resp in (discover(client, {}), client.simulate_get("/api/v1/symbols", headers=auth())):
            assert (503, "market_unavailable") == (resp.status_code, resp.json["error"])
            assert "5" == resp.headers["Retry-After"]


def status_of(client: falcon.testing.TestClient, scan_id: str, **headers: str) -> Any:
    url = f"/api/v1/opportunities/status/{scan_id}"
    return client.simulate_get(url, headers={**auth(), **headers})


def test_a_running_scan_says_when_to_poll_and_is_tagged(
    client: falcon.testing.TestClient,
) -> None:
    """discover's 202 and a running scan's status carry Retry-After (1 to 5 s) and the
    status an ETag; sending it back gets a bodiless 304 while nothing changed."""
    started = discover(client, {"strategies": ["held"]})
    assert "1" == started.headers["Retry-After"]
    first = status_of(client, started.json["scan_id"])
    assert 1 <= int(first.headers["Retry-After"]) <= 5
    unchanged = status_of(
        client, started.json["scan_id"], **{"If-None-Match": first.headers["ETag"]}
    )
    assert (304, b"") == (unchanged.status_code, unchanged.content)
    assert first.headers["ETag"] == unchanged.headers["ETag"]
    weak = status_of(
        client, started.json["scan_id"], **{"If-None-Match": "W/" + first.headers["ETag"]}
    )
    assert 304 == weak.status_code
    other = status_of(client, started.json["scan_id"], **{"If-None-Match": '"0000"'})
    assert 200 == other.status_code


def test_a_finished_scan_is_tagged_and_its_tag_changes_with_its_state(
    client: falcon.testing.TestClient,
) -> None:
    """The tag of a running scan no longer matches once it finished; the results carry
    their own tag, a 304 for them too, and no Retry-After."""
    scan_id = discover(client, {"strategies": ["held"]}).json["scan_id"]
    running = status_of(client, scan_id).headers["ETag"]
    GATE.set()
    poll_until(lambda: status_of(client, scan_id).json["status"] == "complete", 10)
    finished = status_of(client, scan_id, **{"If-None-Match": running})
    assert 200 == finished.status_code
    assert "Retry-After" not in finished.headers
    url = f"/api/v1/opportunities/results/{scan_id}"
    results = client.simulate_get(url, headers=auth())
    again = client.simulate_get(url, headers={**auth(), "If-None-Match": results.headers["ETag"]})
    assert (304, b"") == (again.status_code, again.content)


def test_a_cancel_is_never_answered_304(client: falcon.testing.TestClient) -> None:
    """If-None-Match means nothing to DELETE: the cancel happens and says so."""
    scan_id = discover(client, {"strategies": ["held"]}).json["scan_id"]
    tag = status_of(client, scan_id).headers["ETag"]
    url = f"/api/v1/opportunities/scans/{scan_id}"
    resp = client.simulate_delete(url, headers={**auth(), "If-None-Match": tag})
    assert ("cancelled", 200) == (resp.json["status"], resp.status_code)


def test_a_running_scan_s_results_so_far(client: falcon.testing.TestClient) -> None:
    """While a strategy still runs, results answer 202 with what the others found
    (ranked, marked partial), tagged, with when to poll again; unchanged: 304."""
    scan_id = discover(client, {"strategies": ["alpha", "held"]}).json["scan_id"]
    url = f"/api/v1/opportunities/results/{scan_id}"
    poll_until(
        lambda: (
            client.simulate_get(url, headers=auth()).json["metadata"]["strategies_completed"] == 1
        ),
        10,
    )
    resp = client.simulate_get(url, headers=auth())
    assert (202, True, "scanning") == (resp.status_code, resp.json["partial"], resp.json["status"])
    assert ["alpha"] == sorted(resp.json["strategy_performance"])
    assert resp.json["opportunities"]
    assert {"alpha"} == {o["strategy"] for o in resp.json["opportunities"]}
    assert 1 <= int(resp.headers["Retry-After"]) <= 5
    again = client.simulate_get(url, headers={**auth(), "If-None-Match": resp.headers["ETag"]})
    assert (304, b"") == (again.status_code, again.content)


def test_a_worker_that_does_not_own_a_running_scan_reads_its_results_so_far_once(
    client: falcon.testing.TestClient, store: FakeStore
) -> None:
    """A scan that runs on another worker: its results so far (and the states) come
    from one read of the store, not a status read and then the results."""
    params = ScanParams(("alpha", "held"), ("SYM0",), "1h")
    scan = NewScan("scan_" + "e" * 32, "alice", params, now_iso(), "elsewhere:1")
    store.register(scan, 10_000)
    store.record_strategy(
        scan.scan_id, scan.epoch, StrategyResult("alpha", "ok", (), 3), now_iso(),
        states=(("alpha", "ok"), ("held", "running")),
    )  # fmt: skip
    store.calls.clear()
    resp = client.simulate_get(f"/api/v1/opportunities/results/{scan.scan_id}", headers=auth())
    assert (202, "store", True) == (
        resp.status_code,
        resp.headers["X-Scan-Source"],
        resp.json["partial"],
    )
    assert {"alpha": "ok", "held": "running"} == resp.json["strategies"]
    assert ["read_partial"] == store.calls


def test_the_scan_list_says_what_each_scan_asked_for_and_finished_ones_when_they_expire(
    client: falcon.testing.TestClient,
) -> None:
    """Each listed scan carries its request (strategies, number of symbols, timeframe);
    a finished one its `expires_at`, its retention after `completed_at`."""
    scan_id = discover(client, {"strategies": ["alpha"], "symbols": ["SYM0"]}).json["scan_id"]
    poll_until(lambda: status_of(client, scan_id).json["status"] == "complete", 10)
    listed = client.simulate_get("/api/v1/opportunities/scans", headers=auth()).json["scans"]
    mine = next(s for s in listed if s["scan_id"] == scan_id)
    assert {"strategies": ["alpha"], "symbols": 1, "timeframe": "1h"} == mine["request"]
    status = status_of(client, scan_id).json
    completed = datetime.fromisoformat(status["completed_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(status["expires_at"].replace("Z", "+00:00"))
    assert 60 == (expires - completed).total_seconds()


@pytest.mark.parametrize("on", [True, False])
def test_the_access_log_is_one_event_per_request_unless_turned_off(
    store: FakeStore, on: bool
) -> None:
    """`OPPSCAN_ACCESS_LOG` on: a `request` event with the route's template, the status
    and the user as the log policy names them; off: none."""
    with api_on_fakes(store, STRATEGIES) as deps:
        client = falcon.testing.TestClient(
            create_app(deps, TokenVerifier.hmac([SECRET]), access_log=on)
        )
        with structlog.testing.capture_logs() as logged:
            client.simulate_get("/api/v1/strategies", headers=auth("amy"))
            client.simulate_get("/api/v1/opportunities/status/scan_" + "0" * 32, headers=auth())
    requests = [e for e in logged if e["event"] == "request"]
    if not on:
        assert [] == requests
        return
    assert [
        ("/api/v1/strategies", 200, logs.USER("amy")),
        ("/api/v1/opportunities/status/{scan_id}", 404, logs.USER("alice")),
    ] == [(e["route"], e["status"], e["user"]) for e in requests]


def test_scan_events_say_who_asked_what_and_a_read_of_another_user_s_scan_warns(
    client: falcon.testing.TestClient,
) -> None:
    """`scan_started` names the user (as the policy does), what was asked and how it
    was answered; a read of another user's scan is a 404 and a warning naming both."""
    with structlog.testing.capture_logs() as logged:
        scan_id = discover(client, {"strategies": ["held"], "timeframe": "4h"}).json["scan_id"]
        discover(client, {"strategies": ["held"], "timeframe": "4h"})  # joins it
        other = client.simulate_get(f"/api/v1/opportunities/status/{scan_id}", headers=auth("eve"))
    assert 404 == other.status_code
    started = [e for e in logged if e["event"] == "scan_started"]
    assert [("scanning", 1, 2, "4h"), ("deduplicated", 1, 2, "4h")] == [
        (e["kind"], e["strategies"], e["symbols"], e["timeframe"]) for e in started
    ]
    assert {logs.USER("alice")} == {e["user"] for e in started}
    warned = [e for e in logged if e["event"] == "scan_of_another_user"]
    assert [("warning", logs.USER("eve"), logs.USER("alice"))] == [
        (e["log_level"], e["user"], e["owner_user"]) for e in warned
    ]
