"""`oppscan serve`'s stderr is one JSON event a line, gunicorn's own lines included,
with one `request` event per request that names its route, status and user."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from oppscan.auth import issue_token
from oppscan.client import Client
from tests.support.polling import poll_until
from tests.support.serve import SECRET, Serve
from tests.support.server import SECRET as SERVER_SECRET
from tests.support.server import GunicornServer

STRATEGIES = "/api/v1/strategies"
STATUS = "/api/v1/opportunities/status/{scan_id}"


def events(serve: Serve) -> list[dict[str, Any]]:
    """Every line of the log stream, parsed: one that is not JSON fails the test."""
    return [json.loads(line) for line in serve.log_text().splitlines()]


def logged(serve: Serve, request_id: str) -> dict[str, Any] | None:
    found = [e for e in events(serve) if e.get("request_id") == request_id]
    return next((e for e in found if e["event"] == "request"), None)


def test_every_line_on_stderr_is_a_json_event_and_every_request_is_logged(
    tmp_path: Path,
) -> None:
    """Requests answered 200, 401 and 404 are one `request` event each (the route's
    template, the status, the time, the request id and the user, hashed); the
    master's and workers' own lines, from start to Ctrl-C, are JSON too."""
    serve = Serve(tmp_path / "serve").start()
    auth = {"Authorization": f"Bearer {issue_token(SECRET, 'ines', 600)}"}
    unknown = "scan_" + "d" * 32
    try:
        serve.wait_ready()
        sent = [
            requests.get(serve.url + STRATEGIES, headers={**auth, "X-Request-ID": "ok-1"}),
            requests.get(serve.url + STRATEGIES, headers={"X-Request-ID": "no-token-1"}),
            requests.get(
                serve.url + STATUS.format(scan_id=unknown),
                headers={**auth, "X-Request-ID": "missing-1"},
            ),
        ]
        assert [200, 401, 404] == [r.status_code for r in sent]
        poll_until(lambda: all(logged(serve, r.headers["X-Request-ID"]) for r in sent), 10)
    finally:
        serve.interrupt()
        serve.exit_code()
    ok, no_token, missing = (logged(serve, r.headers["X-Request-ID"]) for r in sent)
    assert ok is not None
    assert no_token is not None
    assert missing is not None
    assert {"method": "GET", "route": STRATEGIES, "status": 200}.items() <= ok.items()
    assert ok["user"].startswith("u-")
    assert ok["worker"] == sent[0].headers["X-Served-By"]
    assert isinstance(ok["duration_ms"], float)
    assert (401, None) == (no_token["status"], no_token["user"])
    assert (STATUS, 404, ok["user"]) == (missing["route"], missing["status"], missing["user"])
    assert "ines" not in serve.log_text()  # OPPSCAN_LOG_USER=hash, the default
    texts = " ".join(str(e["event"]) for e in events(serve))
    assert "Starting gunicorn" in texts  # gunicorn's own lines, as JSON events
    assert "Booting worker" in texts


def follow(*args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "oppscan.cli", "logs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_oppscan_logs_follows_one_scan_and_one_user_across_workers(
    server: GunicornServer,
) -> None:
    """`oppscan logs --scan` prints that scan's events from every worker in time order,
    its polls included; `--user` finds a user's events by name though they are
    logged hashed; `--request` the events of one request."""
    token = server.token("lena")
    with Client(server.url, token) as client:
        scan = client.discover(strategies=["momentum", "rsi_reversal"], symbols=["BTC-USD"])
    status = f"/api/v1/opportunities/status/{scan.scan_id}"
    with Client(server.url, token, spread=True) as spread:
        for i in range(8):  # new connections: the polls spread over the workers
            spread.send("GET", status, headers={"X-Request-ID": f"follow-{i}"})
        spread.scan(scan.scan_id).wait(timeout=60)
    log = str(server.log_path)
    events = follow("--scan", scan.scan_id, log)
    kinds = [e["event"] for e in events]
    assert "scan_started" == kinds[0]
    assert {"scan_owned", "scan_finished", "request"} <= set(kinds)
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    polls = [e for e in events if e["event"] == "request"]
    assert len({e["worker"] for e in polls}) >= 2
    mine = follow("--user", "lena", log, env={"OPPSCAN_SECRET": SERVER_SECRET})
    assert scan.scan_id in {e.get("scan_id") for e in mine}
    assert {e["user"] for e in mine} == {events[0]["user"]}
    one = follow("--request", "follow-3", log)
    assert (["follow-3"], [scan.scan_id]) == (
        sorted({e["request_id"] for e in one}),
        sorted({e["scan_id"] for e in one}),
    )
