"""HTTP for the load test: a new connection per request, so requests spread over workers.

Requests go through `oppscan.client` (`Client.send`): the load test observes
every answer, errors included, and times it.

A pooled keep-alive connection would stay on the worker that accepted it; a fresh
connection lets the kernel hand each request to whichever worker accepts first,
as requests from many clients behind a load balancer would arrive.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from oppscan.client import Client, ServiceUnreachable
from oppscan.loadtest.stats import TRANSPORT_ERROR


@dataclass(frozen=True)
class Target:
    """The one service a load test may send requests to."""

    scheme: str
    host: str
    port: int
    base_path: str = ""

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.base_path}"

    def is_loopback(self) -> bool:
        """True when every address the host resolves to is on this machine's loopback."""
        try:
            found = socket.getaddrinfo(self.host, self.port, proto=socket.IPPROTO_TCP)
        except OSError:
            return False
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found}
        return bool(addresses) and all(a.is_loopback for a in addresses)


@dataclass(frozen=True)
class Reply:
    """One answer, or `status` 0 when the request got none."""

    status: int
    body: bytes
    latency_s: float
    worker: str | None = None
    retry_after: float | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def error_code(self) -> str | None:
        """The `error` of a failed answer (`no_answer` when none came), else None."""
        if self.status == TRANSPORT_ERROR:
            return "no_answer"
        if self.status < 400:
            return None
        try:
            code = json.loads(self.body).get("error")
        except (ValueError, AttributeError):
            code = None
        return f"{self.status} {code}" if isinstance(code, str) else str(self.status)


class Http(Protocol):
    """What the scenario needs of a client (tests pass a fake)."""

    @property
    def timeout_s(self) -> float: ...

    def get(self, path: str, token: str | None = None) -> Reply: ...

    def post_json(self, path: str, token: str, body: Any) -> Reply: ...


class HttpClient:
    """The load test's requests through `oppscan.client`: one client per user, each
    request on a new connection (`spread`), every answer kept as it came."""

    def __init__(self, target: Target, timeout_s: float = 10.0) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._clients: dict[str | None, Client] = {}

    def get(self, path: str, token: str | None = None) -> Reply:
        return self._send("GET", path, token, None)

    def post_json(self, path: str, token: str, body: Any) -> Reply:
        return self._send("POST", path, token, body)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def _client(self, token: str | None) -> Client:
        with self._lock:
            found = self._clients.get(token)
            if found is None:
                found = Client(self.target.url, token, self.timeout_s, spread=True)
                self._clients[token] = found
            return found

    def _send(self, method: str, path: str, token: str | None, body: Any) -> Reply:
        started = time.perf_counter()
        try:
            answer = self._client(token).send(method, path, json=body)
        except ServiceUnreachable:
            return Reply(TRANSPORT_ERROR, b"", time.perf_counter() - started)
        return Reply(
            answer.status,
            answer.content,
            time.perf_counter() - started,
            answer.worker,
            answer.retry_after,
        )
