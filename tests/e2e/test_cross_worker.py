"""Twenty scans from four users, polled across four real gunicorn workers."""

from __future__ import annotations

import collections
import random
import threading
import time
from dataclasses import dataclass, field

import requests

from tests.support.server import GunicornServer

USERS = ("ana", "ben", "cai", "dee")
SCANS_PER_USER = 5
POLLERS = 16
DEADLINE_S = 180


@dataclass
class Scan:
    scan_id: str
    user: str
    token: str


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    live_404s: list[str] = field(default_factory=list)
    zero_totals: list[str] = field(default_factory=list)
    complete_short: list[str] = field(default_factory=list)  # `complete` with done < total
    backwards: list[str] = field(default_factory=list)
    complete_then_not_200: list[str] = field(default_factory=list)
    errors_5xx: list[str] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)
    sources: collections.Counter[str] = field(default_factory=collections.Counter)
    bodies: dict[str, dict[str, bytes]] = field(
        default_factory=lambda: collections.defaultdict(dict)
    )
    done: set[str] = field(default_factory=set)

    def saw(self, resp: requests.Response) -> None:
        with self.lock:
            self.requests += 1
            self.workers.add(resp.headers.get("X-Served-By", "?"))
            self.sources[resp.headers.get("X-Scan-Source", "-")] += 1
            if resp.status_code >= 500:
                self.errors_5xx.append(f"{resp.status_code} {resp.text[:200]}")


def get(server: GunicornServer, scan: Scan, kind: str, tally: Tally) -> requests.Response:
    # A new connection per request, so requests spread over the workers.
    resp = requests.get(
        f"{server.url}/api/v1/opportunities/{kind}/{scan.scan_id}",
        headers={"Authorization": f"Bearer {scan.token}", "Connection": "close"},
        timeout=10,
    )
    tally.saw(resp)
    return resp


def start_scans(server: GunicornServer) -> list[Scan]:
    symbols = requests.get(
        f"{server.url}/api/v1/symbols",
        headers={"Authorization": f"Bearer {server.token('ana')}"},
        timeout=10,
    ).json()["symbols"]
    scans = []
    for u, user in enumerate(USERS):
        token = server.token(user)
        for i in range(SCANS_PER_USER):
            chosen = symbols[(u * SCANS_PER_USER + i) % len(symbols) :][:12] or symbols[:12]
            resp = requests.post(
                f"{server.url}/api/v1/opportunities/discover",
                json={"symbols": chosen, "timeframe": "1h"},
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                timeout=10,
            )
            assert 202 == resp.status_code, resp.text
            scans.append(Scan(resp.json()["scan_id"], user, token))
    return scans


def poll(server: GunicornServer, scans: list[Scan], tally: Tally, seed: int) -> None:
    """One client: polls its scans every 100 to 200 ms until each is complete."""
    rng = random.Random(seed)
    last: dict[str, int] = {}
    pending = list(scans)
    deadline = time.monotonic() + DEADLINE_S
    while pending and time.monotonic() < deadline:
        for scan in list(pending):
            resp = get(server, scan, "status", tally)
            if resp.status_code == 404:
                tally.live_404s.append(scan.scan_id)
                continue
            if resp.status_code != 200:
                continue
            progress = resp.json()["progress"]
            done, total = progress["strategies_completed"], progress["total_strategies"]
            if total == 0:
                tally.zero_totals.append(scan.scan_id)
            if done < last.get(scan.scan_id, 0):
                tally.backwards.append(f"{scan.scan_id}: {last[scan.scan_id]} -> {done}")
            last[scan.scan_id] = done
            if rng.random() < 0.3:
                get(server, scan, "results", tally)
            if resp.json()["status"] == "complete":
                if done != total:
                    tally.complete_short.append(f"{scan.scan_id}: {done}/{total}")
                check_results(server, scan, tally)
                pending.remove(scan)
        time.sleep(rng.uniform(0.1, 0.2))


def check_results(server: GunicornServer, scan: Scan, tally: Tally) -> None:
    """Right after a `complete`, results are 200 on the very next request, whatever worker."""
    resp = get(server, scan, "results", tally)
    if resp.status_code != 200 or resp.json()["status"] != "complete":
        tally.complete_then_not_200.append(f"{scan.scan_id}: {resp.status_code}")
        return
    with tally.lock:
        tally.bodies[scan.scan_id][resp.headers["X-Served-By"]] = resp.content
        tally.done.add(scan.scan_id)


def test_scans_are_correct_from_every_worker(server: GunicornServer) -> None:
    """No 404 for live scans, honest monotonic progress, identical results, many workers."""
    scans = start_scans(server)
    tally = Tally()
    clients = [
        threading.Thread(target=poll, args=(server, scans[i % 4 :: 4], tally, i))
        for i in range(POLLERS)
    ]
    for client in clients:
        client.start()
    for client in clients:
        client.join(DEADLINE_S + 30)
    # A last read of every scan's results from many connections: all bodies equal.
    for scan in scans:
        for _ in range(8):
            check_results(server, scan, tally)

    print(
        f"\nrequests={tally.requests} workers={len(tally.workers)} sources={dict(tally.sources)} "
        f"completed={len(tally.done)}/{len(scans)} 404s={len(tally.live_404s)} "
        f"5xx={len(tally.errors_5xx)} backwards={len(tally.backwards)}"
    )
    assert [] == tally.live_404s
    assert [] == tally.errors_5xx
    assert [] == tally.zero_totals
    assert [] == tally.complete_short
    assert [] == tally.backwards
    assert [] == tally.complete_then_not_200
    assert {s.scan_id for s in scans} == tally.done
    for scan_id, bodies in tally.bodies.items():
        assert 1 == len(set(bodies.values())), f"{scan_id} differs across {sorted(bodies)}"
    assert len(tally.workers) >= 3
    assert {"actor", "store", "cache"} <= set(tally.sources)
