"""Users cannot see, cancel, list or join each other's scans; secrets stay out of logs."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests

from oppscan.processes import free_port
from oppscan.storage import EmbeddedRedis
from tests.support.server import SECRET, GunicornServer

VARYING = {"x-request-id", "x-served-by", "date"}


def answer(resp: requests.Response) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Everything a client can compare, except headers that differ on every request."""
    headers = sorted((k.lower(), v) for k, v in resp.headers.items() if k.lower() not in VARYING)
    return resp.status_code, resp.content, headers


def call(server: GunicornServer, method: str, path: str, user: str) -> requests.Response:
    return requests.request(
        method,
        f"{server.url}/api/v1/opportunities/{path}",
        headers={"Authorization": f"Bearer {server.token(user)}", "Connection": "close"},
        timeout=10,
    )


def test_another_users_scan_is_indistinguishable_from_none(server: GunicornServer) -> None:
    """For every route, Bob's answers about Alice's scans equal those about random ids."""
    alice_scans = [
        call_json(server, "alice", {"symbols": [symbol]})["scan_id"]
        for symbol in ("BTC-USD", "ETH-USD", "SOL-USD")
    ]
    random_ids = ["scan_" + secrets.token_hex(16) for _ in range(200)]
    workers = set()
    for route in ("status/{}", "results/{}"):
        expected = answer(call(server, "GET", route.format(random_ids[0]), "bob"))
        assert 404 == expected[0]
        for scan_id in alice_scans + random_ids:
            resp = call(server, "GET", route.format(scan_id), "bob")
            workers.add(resp.headers["X-Served-By"])
            assert expected == answer(resp), scan_id
    cancel_unknown = answer(call(server, "DELETE", f"scans/{random_ids[1]}", "bob"))
    for scan_id in alice_scans:
        assert cancel_unknown == answer(call(server, "DELETE", f"scans/{scan_id}", "bob"))
        assert 200 == call(server, "GET", f"status/{scan_id}", "alice").status_code
    listed = call(server, "GET", "scans", "bob").json()["scans"]
    assert not {s["scan_id"] for s in listed} & set(alice_scans)
    joined = call_json(server, "bob", {"symbols": ["BTC-USD"]})
    assert joined["scan_id"] not in alice_scans
    assert "deduplicated" not in joined
    assert len(workers) >= 3


def call_json(server: GunicornServer, user: str, body: dict[str, object]) -> dict[str, object]:
    resp = requests.post(
        f"{server.url}/api/v1/opportunities/discover",
        json=body,
        headers={"Authorization": f"Bearer {server.token(user)}"},
        timeout=10,
    )
    assert 202 == resp.status_code, resp.text
    result: dict[str, object] = resp.json()
    return result


@pytest.fixture
def acl_redis(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, str]]:
    """A Redis that only lets a named ACL user with a password in."""
    server = EmbeddedRedis(tmp_path / "acl-redis", port=free_port()).start()
    admin = redis.Redis.from_url(server.url)
    password = "pw-" + secrets.token_hex(12)
    admin.acl_setuser(
        "oppscan",
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    admin.acl_setuser("default", enabled=False)
    yield server, f"redis://oppscan:{password}@127.0.0.1:{server.port}/0"
    server.signal(signal.SIGCONT)
    server.stop()


def test_acl_user_works_and_no_secret_reaches_the_logs(
    acl_redis: tuple[EmbeddedRedis, str], tmp_path: Path
) -> None:
    """Redis with an ACL user and password works from the URL; logs never show secrets."""
    store, url = acl_redis
    password = url.split(":")[2].split("@")[0]
    server = GunicornServer(url, tmp_path, workers=2).start()
    try:
        token = server.token("dana")
        scan_id = call_json(server, "dana", {"symbols": ["BTC-USD"]})["scan_id"]
        store.signal(signal.SIGSTOP)  # provoke store errors, which get logged
        for _ in range(10):
            resp = call(server, "GET", f"status/{scan_id}", "dana")
            assert resp.status_code in (200, 503)
        store.signal(signal.SIGCONT)
        bad = requests.get(
            f"{server.url}/api/v1/strategies",
            headers={"Authorization": f"Bearer {token}x"},
            timeout=10,
        )
        assert 401 == bad.status_code
    finally:
        store.signal(signal.SIGCONT)
        server.stop()
    log = server.log_text()
    assert '"store_down"' in log
    for secret in (password, token, SECRET):
        assert secret not in log
