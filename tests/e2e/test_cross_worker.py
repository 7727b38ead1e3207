"""Twenty scans from four users, polled across four real gunicorn workers."""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from oppscan.client import Answer, Client
from tests.support.cluster import ClusterDeployment
from tests.support.plugins import HANG, install_hang_plugin
from tests.support.server import GunicornServer

USERS = ("ana", "ben", "cai", "dee")
SCANS_PER_USER = 5
POLLERS = 16
DEADLINE_S = 180
SYMBOLS_PER_SCAN = 3  # 20 scans: 60 symbols, the whole synthetic universe


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    """4 workers; each scan's 12 series come one at a time, 100 ms each."""
    env = {"OPPSCAN_SYNTHETIC_LATENCY_MS": "100", "OPPSCAN_FETCH_CONCURRENCY": "1"}
    started = GunicornServer(redis_url, tmp_path, workers=4, env=env).start()
    yield started
    started.stop()


@dataclass
class Scan:
    scan_id: str
    user: str
    token: str
    client: Client  # the user's


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    live_404s: list[str] = field(default_factory=list)
    zero_totals: list[str] = field(default_factory=list)
    complete_short: list[str] = field(default_factory=list)  # `complete` with done < total
    backwards: list[str] = field(default_factory=list)
    states_wrong: list[str] = field(default_factory=list)  # states that disagree or go back
    complete_then_not_200: list[str] = field(default_factory=list)
    errors_5xx: list[str] = field(default_factory=list)
    workers: set[str] = field(default_factory=set)
    sources: collections.Counter[str] = field(default_factory=collections.Counter)
    bodies: dict[str, dict[str, bytes]] = field(
        default_factory=lambda: collections.defaultdict(dict)
    )
    done: set[str] = field(default_factory=set)

    def saw(self, answer: Answer) -> None:
        with self.lock:
            self.requests += 1
            self.workers.add(answer.worker or "?")
            self.sources[answer.source or "-"] += 1
            if answer.status >= 500:
                self.errors_5xx.append(f"{answer.status} {answer.content[:200]!r}")


def get(server: GunicornServer, scan: Scan, kind: str, tally: Tally) -> Answer:
    answer = scan.client.send("GET", f"/api/v1/opportunities/{kind}/{scan.scan_id}")
    tally.saw(answer)
    return answer


def start_scans(server: GunicornServer) -> list[Scan]:
    with Client(server.url, server.token("ana")) as client:
        symbols = client.symbols()
    scans = []
    for u, user in enumerate(USERS):
        token = server.token(user)
        for i in range(SCANS_PER_USER):
            # Symbols of its own: no scan gets its series from another's fetch, so
            # each runs for seconds and its owner is polled while it runs.
            first = (u * SCANS_PER_USER + i) * SYMBOLS_PER_SCAN
            chosen = symbols[first : first + SYMBOLS_PER_SCAN]
            # A new connection per request, so requests spread over the workers.
            client = Client(server.url, token, spread=True, retries=0)
            scan = client.discover(symbols=chosen, timeframe="1h")
            assert scan.first["status"] in ("queued", "scanning"), scan.first  # a 202
            scans.append(Scan(scan.scan_id, user, token, client))
    return scans


RANK = {"pending": 0, "running": 1, "ok": 2, "error": 2, "skipped": 2}


def check_states(body: dict[str, Any], before: dict[str, str] | None) -> str | None:
    """What is wrong with the strategy states of one status answer, if anything: every
    strategy has one; the outcomes are exactly the strategies completed; a complete
    scan has only outcomes; none went back since the client's last answer."""
    states, progress = body["strategies"], body["progress"]
    ended = sum(RANK[state] == 2 for state in states.values())
    if len(states) != progress["total_strategies"] or ended != progress["strategies_completed"]:
        return f"{len(states)} states, {ended} ended: {progress}"
    went_back = [n for n, s in (before or {}).items() if RANK[states[n]] < RANK[s]]
    if went_back:
        return f"went back: {[(n, (before or {})[n], states[n]) for n in went_back]}"
    return None


def poll(server: GunicornServer, scans: list[Scan], tally: Tally, seed: int) -> None:
    """One client: polls its scans every 100 to 200 ms until each is complete."""
    rng = random.Random(seed)
    last: dict[str, int] = {}
    states: dict[str, dict[str, str]] = {}
    pending = list(scans)
    deadline = time.monotonic() + DEADLINE_S
    while pending and time.monotonic() < deadline:
        for scan in list(pending):
            answer = get(server, scan, "status", tally)
            if answer.status == 404:
                tally.live_404s.append(scan.scan_id)
                continue
            if answer.status != 200:
                continue
            progress = answer.body["progress"]
            done, total = progress["strategies_completed"], progress["total_strategies"]
            if total == 0:
                tally.zero_totals.append(scan.scan_id)
            if done < last.get(scan.scan_id, 0):
                tally.backwards.append(f"{scan.scan_id}: {last[scan.scan_id]} -> {done}")
            last[scan.scan_id] = done
            wrong = check_states(answer.body, states.get(scan.scan_id))
            if wrong is not None:
                tally.states_wrong.append(f"{scan.scan_id} from {answer.source}: {wrong}")
            states[scan.scan_id] = answer.body["strategies"]
            if rng.random() < 0.3:
                get(server, scan, "results", tally)
            if answer.body["status"] == "complete":
                if done != total:
                    tally.complete_short.append(f"{scan.scan_id}: {done}/{total}")
                check_results(server, scan, tally)
                pending.remove(scan)
        time.sleep(rng.uniform(0.1, 0.2))


def check_results(server: GunicornServer, scan: Scan, tally: Tally) -> None:
    """Right after a `complete`, results are 200 on the very next request, whatever worker."""
    answer = get(server, scan, "results", tally)
    if answer.status != 200 or answer.body["status"] != "complete":
        tally.complete_then_not_200.append(f"{scan.scan_id}: {answer.status}")
        return
    with tally.lock:
        tally.bodies[scan.scan_id][answer.worker or "?"] = answer.content
        tally.done.add(scan.scan_id)


def test_scans_are_correct_from_every_worker(server: GunicornServer) -> None:
    """No 404 for live scans, honest monotonic progress, identical results, many workers."""
    check_every_worker(server)


@pytest.fixture
def cluster_server(redis_cluster: ClusterDeployment, tmp_path: Path) -> Iterator[GunicornServer]:
    """The same 4 workers on a three-master Redis Cluster (users on two masters)."""
    redis_cluster.flush()
    env = {"OPPSCAN_SYNTHETIC_LATENCY_MS": "15", "OPPSCAN_FETCH_CONCURRENCY": "1"}
    service = GunicornServer(redis_cluster.url, tmp_path, workers=4, env=env).start()
    yield service
    service.stop()


def test_scans_are_correct_from_every_worker_on_a_cluster(cluster_server: GunicornServer) -> None:
    """The same guarantees with the store on a Redis Cluster."""
    check_every_worker(cluster_server)


def check_every_worker(server: GunicornServer) -> None:
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
        f"5xx={len(tally.errors_5xx)} backwards={len(tally.backwards)} "
        f"states_wrong={len(tally.states_wrong)}"
    )
    assert [] == tally.live_404s
    assert [] == tally.errors_5xx
    assert [] == tally.zero_totals
    assert [] == tally.complete_short
    assert [] == tally.backwards
    assert [] == tally.states_wrong
    assert [] == tally.complete_then_not_200
    assert {s.scan_id for s in scans} == tally.done
    for scan_id, bodies in tally.bodies.items():
        assert 1 == len(set(bodies.values())), f"{scan_id} differs across {sorted(bodies)}"
    assert len(tally.workers) >= 3
    assert {"actor", "store", "cache"} <= set(tally.sources)


@pytest.fixture
def slow_server(redis_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    """4 workers with the `hang` plugin, which runs until its 4 s deadline."""
    plugins = install_hang_plugin(tmp_path / "plugins")
    path = os.pathsep.join(p for p in (str(plugins), os.environ.get("PYTHONPATH", "")) if p)
    env = {"OPPSCAN_STRATEGY_TIMEOUT": "4", "PYTHONPATH": path}
    started = GunicornServer(redis_url, tmp_path, workers=4, env=env).start()
    yield started
    started.stop()


def test_every_worker_shows_which_strategy_runs(slow_server: GunicornServer) -> None:
    """While a strategy runs, its owner and every other worker (reading Redis) show it
    `running`, in identical bodies; then its outcome."""
    token = slow_server.token("ana")
    with Client(slow_server.url, token) as client:
        scan = client.discover(strategies=[HANG, "momentum"], symbols=["BTC-USD"])
    running = {HANG: "running", "momentum": "ok"}
    seen: dict[str, bytes] = {}  # source -> body showing `hang` running
    with Client(slow_server.url, token, spread=True, retries=0) as spread:
        deadline = time.monotonic() + 30
        while not {"actor", "store"} <= set(seen) and time.monotonic() < deadline:
            answer = spread.send("GET", f"/api/v1/opportunities/status/{scan.scan_id}")
            assert 200 == answer.status, answer.content
            if answer.body["strategies"] == running:
                seen[answer.source or "?"] = answer.content
        assert {"actor", "store"} <= set(seen), f"hang seen running from {sorted(seen)}"
        assert 1 == len(set(seen.values())), seen
        final = spread.scan(scan.scan_id).wait(timeout=30)
        done = spread.scan(scan.scan_id).status()
    assert "complete" == final.status
    assert {HANG: "error", "momentum": "ok"} == done.strategies
