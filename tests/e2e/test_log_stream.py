"""`oppscan serve`'s stderr is one JSON event a line, gunicorn's own lines included,
with one `request` event per request that names its route, status and user."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from oppscan.auth import issue_token
from tests.support.polling import poll_until
from tests.support.serve import SECRET, Serve

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
