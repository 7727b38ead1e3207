"""The oppscan client pattern for Locust: start a scan, poll it to the end, fetch its results.

    locust -f locustfile.py --host http://127.0.0.1:8000
    locust -f locustfile.py --headless -u 8 -r 8 -t 30s --host http://127.0.0.1:8000

Each simulated user signs in with `OPPSCAN_LOADTEST_TOKEN`, or with a token of its
own (`locust-N`) signed with the configured secret (`OPPSCAN_SECRET`, else the one
in `OPPSCAN_DATA_DIR`, as `oppscan token` does). It starts a scan over its own
symbol subset with `force_refresh` (a real scan, not a cached one), polls its
status (ten times as often as it starts scans) and fetches the results once it
finished. Every request opens a new connection (`Connection: close`), so requests
spread over the gunicorn workers instead of sticking to one. Requests are grouped
by route in Locust's statistics; a 404 or 5xx is a failure, and so is a 429: the
service limits discover per user (`OPPSCAN_DISCOVER_RATE_PER_MINUTE`), and with a
shared `OPPSCAN_LOADTEST_TOKEN` every simulated user counts as one.
"""

from __future__ import annotations

import itertools
import os

from locust import HttpUser, between, task

from oppscan.auth import issue_token
from oppscan.loadtest import symbols_for
from oppscan.settings import Settings

API = "/api/v1"
TERMINAL = frozenset({"complete", "failed", "cancelled"})
SYMBOLS_PER_SCAN = 8
MAX_POLLS_PER_SCAN = 1000  # give up on a scan polled this often
TOKEN_TTL_S = 86400

_numbers = itertools.count()


def _token(user: str) -> str:
    given = os.environ.get("OPPSCAN_LOADTEST_TOKEN")
    if given:
        return given
    settings = Settings.from_env()
    return issue_token(
        settings.resolved_secret(),
        user,
        TOKEN_TTL_S,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


class ScanClient(HttpUser):
    """One client of the API: one scan at a time, polled every 100 to 200 ms."""

    wait_time = between(0.1, 0.2)

    def on_start(self) -> None:
        self.number = next(_numbers)
        self.client.headers.update(
            {"Authorization": f"Bearer {_token(f'locust-{self.number}')}", "Connection": "close"}
        )
        self.symbols: list[str] = self.client.get(f"{API}/symbols").json()["symbols"]
        self.round = 0
        self.scan_id: str | None = None
        self.polls = 0

    @task(1)
    def discover(self) -> None:
        """Start a scan, unless one is running: then poll it instead."""
        if self.scan_id is not None:
            self.poll()
            return
        body = {
            "symbols": symbols_for(self.symbols, self.number, self.round, SYMBOLS_PER_SCAN),
            "force_refresh": True,
        }
        self.round += 1
        with self.client.post(
            f"{API}/opportunities/discover", json=body, catch_response=True
        ) as resp:
            if resp.status_code == 429:
                resp.failure("rate limited: see OPPSCAN_DISCOVER_RATE_PER_MINUTE")
                return
            if resp.status_code != 202:
                resp.failure(f"discover answered {resp.status_code}")
                return
            self.scan_id, self.polls = resp.json()["scan_id"], 0

    @task(10)
    def poll(self) -> None:
        """Poll the running scan's status; fetch its results once it finished."""
        if self.scan_id is None:
            return
        if self.polls >= MAX_POLLS_PER_SCAN:
            self.scan_id = None  # give up on it, whatever it answered; start another
            return
        self.polls += 1
        with self.client.get(
            f"{API}/opportunities/status/{self.scan_id}",
            name=f"{API}/opportunities/status/[scan_id]",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"status answered {resp.status_code}")
                return
            finished = resp.json()["status"] in TERMINAL
        if finished:
            self.fetch_results()

    def fetch_results(self) -> None:
        with self.client.get(
            f"{API}/opportunities/results/{self.scan_id}",
            name=f"{API}/opportunities/results/[scan_id]",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"results of a finished scan answered {resp.status_code}")
        self.scan_id = None
