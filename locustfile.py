"""The oppscan client pattern for Locust: start a scan, poll it to the end, fetch its results.

    locust -f locustfile.py --host http://127.0.0.1:8000
    locust -f locustfile.py --headless -u 8 -r 8 -t 30s --host http://127.0.0.1:8000

Each simulated user is an `oppscan.client.Client` whose requests go through
Locust's own session (`LocustTransport`), so Locust times and counts every one.
It signs in with `OPPSCAN_LOADTEST_TOKEN`, or with a token of its own
(`locust-N`) signed with the configured secret (`OPPSCAN_SECRET`, else the one in
the data dir, as `oppscan token` does; none is ever created here). It starts a
scan over its own symbol subset with `force_refresh` (a real scan, not a cached
one), polls its status (ten times as often as it starts scans; conditional, so
an unchanged scan answers 304) and fetches the results once it finished. Every
request opens a new connection, so requests spread over the gunicorn workers.
Requests are grouped by route in Locust's statistics; any 4xx or 5xx is a
failure, 429 included: the service limits discover per user
(`OPPSCAN_DISCOVER_RATE_PER_MINUTE`), and with a shared `OPPSCAN_LOADTEST_TOKEN`
every simulated user counts as one.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from typing import Any

import httpx
from locust import HttpUser, between, task

from oppscan.auth import issue_token
from oppscan.client import Client, OppscanError, Scan
from oppscan.loadtest import symbols_for
from oppscan.settings import Settings

SYMBOLS_PER_SCAN = 8
MAX_POLLS_PER_SCAN = 1000  # give up on a scan polled this often
TOKEN_TTL_S = 86400
SCAN_ID = re.compile(r"scan_[0-9a-f]{32}")

_numbers = itertools.count()
logging.getLogger("httpx").setLevel(logging.WARNING)  # Locust counts every request already


def _token(user: str) -> str:
    given = os.environ.get("OPPSCAN_LOADTEST_TOKEN")
    if given:
        return given
    settings = Settings.from_env()
    secret = settings.available_secret()
    if secret is None:
        raise RuntimeError("no token: set OPPSCAN_LOADTEST_TOKEN, or OPPSCAN_SECRET")
    return issue_token(
        secret, user, TOKEN_TTL_S, audience=settings.jwt_audience, issuer=settings.jwt_issuer
    )


class LocustTransport(httpx.BaseTransport):
    """httpx requests sent through Locust's session, named by route (scan ids elided)."""

    def __init__(self, session: Any) -> None:
        self._session = session

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeout = request.extensions.get("timeout", {}).get("read")
        answer = self._session.request(
            request.method,
            str(request.url),
            headers=dict(request.headers),
            data=request.content or None,
            name=SCAN_ID.sub("[scan_id]", request.url.path),
            timeout=timeout,
        )
        if answer.status_code == 0:  # Locust's answer when none came (refused, reset)
            raise httpx.ConnectError(str(answer.error), request=request)
        # requests has decoded the body already: drop what says it is still encoded.
        headers = {
            name: value
            for name, value in answer.headers.items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        }
        return httpx.Response(
            answer.status_code, headers=headers, content=answer.content, request=request
        )


class ScanClient(HttpUser):
    """One client of the API: one scan at a time, polled every 100 to 200 ms."""

    wait_time = between(0.1, 0.2)

    def on_start(self) -> None:
        self.number = next(_numbers)
        token = _token(f"locust-{self.number}")
        self.api = Client(
            self.host or "", token, transport=LocustTransport(self.client), spread=True, retries=0
        )
        self.symbols = self.api.symbols()
        self.round = 0
        self.scan: Scan | None = None
        self.polls = 0

    def on_stop(self) -> None:
        self.api.close()

    @task(1)
    def discover(self) -> None:
        """Start a scan, unless one is running: then poll it instead."""
        if self.scan is not None:
            self.poll()
            return
        symbols = symbols_for(self.symbols, self.number, self.round, SYMBOLS_PER_SCAN)
        self.round += 1
        try:
            self.scan = self.api.discover(symbols=symbols, force_refresh=True)
        except OppscanError:
            return  # counted as a failure by Locust already
        self.polls = 0

    @task(10)
    def poll(self) -> None:
        """Poll the running scan's status; fetch its results once it finished."""
        if self.scan is None:
            return
        if self.polls >= MAX_POLLS_PER_SCAN:
            self.scan = None  # give up on it, whatever it answered; start another
            return
        self.polls += 1
        try:
            finished = self.scan.status().finished
            if finished:
                self.scan.results()
        except OppscanError:
            return
        if finished:
            self.scan = None
