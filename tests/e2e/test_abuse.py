"""Clients that send too slowly or too much cannot tie up the workers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.server import GunicornServer


@pytest.fixture
def strict_server(redis_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    server = GunicornServer(
        redis_url, tmp_path, workers=2, threads=2, env={"OPPSCAN_BODY_TIMEOUT": "1"}
    ).start()
    yield server
    server.stop()


def slow_request(server: GunicornServer, body_sent: bytes, declared: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = (
        "POST /api/v1/opportunities/discover HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {server.token('slow')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode() + body_sent)
    return sock


def read_reply(sock: socket.socket) -> str:
    """One whole HTTP response (headers and a Content-Length body) from `sock`."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096) or b"\r\n\r\n"
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        ),
        0,
    )
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode()


def test_a_slow_body_is_cut_off_with_408(strict_server: GunicornServer) -> None:
    """A body that stops arriving is answered 408 after the body timeout."""
    sock = slow_request(strict_server, b'{"symbols": ', declared=100)
    started = time.monotonic()
    reply = read_reply(sock)
    sock.close()
    assert reply.startswith("HTTP/1.1 408"), reply[:200]
    assert '"request_timeout"' in reply
    assert time.monotonic() - started < 5


def test_slow_clients_do_not_starve_others(strict_server: GunicornServer) -> None:
    """While every request thread holds a slow body, health checks are still answered."""
    stalled = [slow_request(strict_server, b"{", declared=50) for _ in range(4)]
    try:
        deadline = time.monotonic() + 5
        answered = False
        while time.monotonic() < deadline and not answered:
            try:
                answered = requests.get(f"{strict_server.url}/healthz", timeout=3).ok
            except requests.RequestException:
                time.sleep(0.1)
        assert answered
    finally:
        for sock in stalled:
            sock.close()


def test_oversized_declared_body_is_refused_before_reading(strict_server: GunicornServer) -> None:
    """A declared body over 64 KiB is answered 413 without waiting for it."""
    sock = slow_request(strict_server, b"", declared=10 * 1024 * 1024)
    reply = read_reply(sock)
    sock.close()
    assert reply.startswith("HTTP/1.1 413"), reply[:200]
