"""HTTP for the load test: a new connection per request, so requests spread over workers.

A pooled keep-alive connection would stay on the worker that accepted it; a fresh
connection lets the kernel hand each request to whichever worker accepts first,
as requests from many clients behind a load balancer would arrive.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class HttpClient:
    target: Target
    timeout_s: float = 10.0

    def get(self, path: str, token: str | None = None) -> Reply:
        return self._send("GET", path, token, None)

    def post_json(self, path: str, token: str, body: Any) -> Reply:
        return self._send("POST", path, token, json.dumps(body).encode())

    def _send(self, method: str, path: str, token: str | None, body: bytes | None) -> Reply:
        headers = {"Connection": "close", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        started = time.perf_counter()
        connection = self._connection()
        try:
            connection.request(method, self.target.base_path + path, body, headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            return Reply(TRANSPORT_ERROR, b"", time.perf_counter() - started)
        finally:
            connection.close()
        return Reply(
            response.status,
            data,
            time.perf_counter() - started,
            response.getheader("X-Served-By"),
            _seconds(response.getheader("Retry-After")),
        )

    def _connection(self) -> http.client.HTTPConnection:
        if self.target.scheme == "https":
            return http.client.HTTPSConnection(
                self.target.host, self.target.port, timeout=self.timeout_s
            )
        return http.client.HTTPConnection(
            self.target.host, self.target.port, timeout=self.timeout_s
        )


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
