"""Clients that start scans and poll them across workers, recording every answer."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from oppscan.client import Answer, Client, ServiceUnreachable
from tests.support.server import GunicornServer


@dataclass(frozen=True)
class Scan:
    scan_id: str
    user: str
    token: str


@dataclass(frozen=True)
class Observation:
    poller: int
    scan_id: str
    kind: str
    started: float
    elapsed: float
    code: int | None  # None: the connection failed (a worker died under it)
    status: str | None = None
    completed: int | None = None
    total: int | None = None
    worker: str = ""


def start_scans(
    server: GunicornServer,
    count: int,
    symbols_per_scan: int = 8,
    users: Sequence[str] = ("ana", "ben"),
) -> list[Scan]:
    """`count` distinct scans, spread over users, each answered 202."""
    with Client(server.url, server.token(users[0])) as client:
        symbols = client.symbols()
    scans = []
    for i in range(count):
        user = users[i % len(users)]
        token = server.token(user)
        chosen = [
            symbols[(i * symbols_per_scan + j) % len(symbols)] for j in range(symbols_per_scan)
        ]
        with Client(server.url, token, spread=True, retries=0) as client:
            started = client.discover(symbols=chosen)
        assert "scan_id" in started.first, started.first
        scans.append(Scan(started.scan_id, user, token))
    return scans


@dataclass
class Watch:
    """Pollers hitting every URL at random until stopped; thread-safe record of answers."""

    urls: Sequence[str]
    scans: Sequence[Scan]
    pollers: int = 8
    interval: tuple[float, float] = (0.05, 0.1)
    observations: list[Observation] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _halt: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _clients: dict[tuple[str, str], Client] = field(default_factory=dict)

    def __enter__(self) -> Watch:
        for i in range(self.pollers):
            thread = threading.Thread(target=self._poll, args=(i,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(15)
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def client(self, url: str, token: str) -> Client:
        """A client per server and user; a new connection per request, so that
        requests spread over the workers."""
        with self._lock:
            found = self._clients.get((url, token))
            if found is None:
                found = self._clients[(url, token)] = Client(url, token, spread=True)
            return found

    def _poll(self, poller: int) -> None:
        rng = random.Random(poller)
        deadline = time.monotonic() + 600  # bounded, whatever the test does
        while not self._halt.is_set() and time.monotonic() < deadline:
            scan = rng.choice(self.scans)
            self.get(poller, rng.choice(self.urls), scan, "status")
            if rng.random() < 0.2:
                self.get(poller, rng.choice(self.urls), scan, "results")
            self._halt.wait(rng.uniform(*self.interval))

    def get(self, poller: int, url: str, scan: Scan, kind: str) -> Observation:
        started = time.monotonic()
        path = f"/api/v1/opportunities/{kind}/{scan.scan_id}"
        try:
            answer = self.client(url, scan.token).send("GET", path)
        except ServiceUnreachable:
            seen = Observation(
                poller, scan.scan_id, kind, started, time.monotonic() - started, None
            )
        else:
            seen = _observed(poller, scan, kind, started, answer)
        with self._lock:
            self.observations.append(seen)
        return seen

    def wait_complete(self, timeout: float) -> float:
        """Poll until every scan reports complete; returns when that was seen."""
        deadline = time.monotonic() + timeout
        pending = {s.scan_id: s for s in self.scans}
        while pending and time.monotonic() < deadline:
            for scan in list(pending.values()):
                seen = self.get(-1, random.choice(self.urls), scan, "status")
                if seen.status == "complete":
                    del pending[scan.scan_id]
            time.sleep(0.1)
        assert not pending, f"not complete after {timeout}s: {sorted(pending)}"
        return time.monotonic()

    def results(self) -> dict[str, dict[str, object]]:
        """Each scan's results, read once from each URL; all copies must be identical."""
        bodies: dict[str, dict[str, object]] = {}
        for scan in self.scans:
            path = f"/api/v1/opportunities/results/{scan.scan_id}"
            copies = {
                self.client(url, scan.token).send("GET", path).content
                for url in self.urls
                for _ in range(4)
            }
            assert len(copies) == 1, f"{scan.scan_id}: results differ between workers"
            bodies[scan.scan_id] = json.loads(copies.pop())
        return bodies

    def counts(self, between: tuple[float, float] | None = None) -> Counter[str]:
        with self._lock:
            seen = [o for o in self.observations if _within(o, between)]
        return Counter("conn_error" if o.code is None else str(o.code) for o in seen)

    def latencies(self, between: tuple[float, float]) -> list[float]:
        with self._lock:
            return sorted(o.elapsed for o in self.observations if _within(o, between) and o.code)

    def backwards(self) -> list[str]:
        """Progress that went down in the sequence one poller saw for one scan."""
        last: dict[tuple[int, str], int] = {}
        found = []
        with self._lock:
            ordered = sorted(self.observations, key=lambda o: o.started)
        for o in ordered:
            if o.completed is None or o.poller < 0:
                continue
            key = (o.poller, o.scan_id)
            if o.completed < last.get(key, 0):
                found.append(f"{o.scan_id} poller {o.poller}: {last[key]} -> {o.completed}")
            last[key] = max(last.get(key, 0), o.completed)
        return found

    def report(self, name: str, **figures: object) -> str:
        counts = self.counts()
        extra = " ".join(f"{k}={v}" for k, v in figures.items())
        return (
            f"\n[{name}] requests={sum(counts.values())} 200={counts['200']} 202={counts['202']} "
            f"404={counts['404']} 503={counts['503']} 5xx_other={self.server_errors()} "
            f"conn_errors={counts['conn_error']} scans={len(self.scans)} {extra}"
        )

    def server_errors(self) -> int:
        counts = self.counts()
        return sum(n for code, n in counts.items() if code.startswith("5") and code != "503")


def _within(o: Observation, between: tuple[float, float] | None) -> bool:
    return between is None or between[0] <= o.started <= between[1]


def _observed(poller: int, scan: Scan, kind: str, started: float, answer: Answer) -> Observation:
    elapsed = time.monotonic() - started
    worker = answer.worker or ""
    body = answer.body if isinstance(answer.body, dict) else {}
    progress = body.get("progress") or {}
    meta = body.get("metadata") or {}
    completed = progress.get("strategies_completed", meta.get("strategies_completed"))
    total = progress.get("total_strategies", meta.get("total_strategies"))
    return Observation(
        poller,
        scan.scan_id,
        kind,
        started,
        elapsed,
        answer.status,
        body.get("status"),
        completed,
        total,
        worker,
    )
