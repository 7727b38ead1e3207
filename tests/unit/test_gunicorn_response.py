"""Responses sent in one piece: the same bytes as gunicorn's, in fewer sends."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Sequence
from email.utils import formatdate
from types import SimpleNamespace
from typing import Any, NamedTuple

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser
from gunicorn.workers.gthread import ThreadWorker
from hypothesis import given, settings
from hypothesis import strategies as st

from oppscan import gunicorn_response
from oppscan.gunicorn_response import OneSendResponse, http_date, send_all
from oppscan.gunicorn_worker import Worker

CLIENT, SERVER = ("127.0.0.1", 40000), ("127.0.0.1", 8000)
JSON = ("Content-Type", "application/json")


class CountingSocket:
    """A real socket that counts the calls that send."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0

    def sendall(self, data: bytes) -> None:
        self.sends += 1
        self.sock.sendall(data)

    def sendmsg(self, buffers: Sequence[Any]) -> int:
        self.sends += 1
        return self.sock.sendmsg(buffers)

    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()


class Outcome(NamedTuple):
    wire: bytes  # what the client got, Date blanked
    sends: int
    sent: int  # body bytes, as the access log counts them
    headers_sent: bool
    should_close: bool


def answer(
    response_class: type[wsgi.Response],
    status: str,
    headers: list[tuple[str, str]],
    body: Sequence[bytes],
    method: str = "GET",
    request_head: str = "HTTP/1.1\r\nHost: oppscan",
    timeout: float | None = None,
    tls: bool = False,
) -> Outcome:
    """One answer as the client and gunicorn's bookkeeping see it."""
    client, server = socket.socketpair()
    with client, server:
        client.sendall(f"{method} /x {request_head}\r\n\r\n".encode())
        cfg = Config()
        if tls:
            cfg.set("certfile", __file__)  # is_ssl: any file will do, no handshake here
        request = next(iter(RequestParser(cfg, server, CLIENT)))
        server.settimeout(timeout)
        counting = CountingSocket(server)
        resp, _ = wsgi.create(request, counting, CLIENT, SERVER, cfg, response_class)
        resp.start_response(status, headers)
        for piece in body:
            resp.write(piece)
        resp.close()
        server.shutdown(socket.SHUT_WR)
        return Outcome(
            received(client), counting.sends, resp.sent, resp.headers_sent, resp.should_close()
        )


def received(sock: socket.socket) -> bytes:
    """All the client gets, with the Date header's value blanked (it ticks)."""
    chunks = iter(lambda: sock.recv(65536), b"")
    return re.sub(rb"Date: [^\r]*", b"Date: -", b"".join(chunks))


BODY = b'{"status":"complete"}' * 1000  # larger than one segment's worth of a small buffer


@pytest.mark.parametrize(
    "request_",
    ["HTTP/1.1\r\nHost: oppscan", "HTTP/1.1\r\nConnection: close", "HTTP/1.0"],
    ids=["keep-alive", "close", "HTTP/1.0"],
)
def test_a_whole_body_goes_with_its_head_in_one_send(request_: str) -> None:
    """One send where gunicorn makes two, and the client gets the same bytes."""
    headers = [JSON, ("Content-Length", str(len(BODY))), ("ETag", '"tag"')]
    stock = answer(wsgi.Response, "200 OK", headers, [BODY], request_head=request_)
    mine = answer(OneSendResponse, "200 OK", headers, [BODY], request_head=request_)
    assert stock._replace(sends=1) == mine
    assert 2 == stock.sends
    assert mine.wire.endswith(b"\r\n\r\n" + BODY)
    assert len(BODY) == mine.sent


@pytest.mark.parametrize(
    ("method", "status", "headers", "body"),
    [
        pytest.param("HEAD", "200 OK", [JSON, ("Content-Length", "4")], [b"body"], id="HEAD"),
        pytest.param("GET", "304 Not Modified", [("ETag", '"t"')], [], id="304"),
        pytest.param("GET", "200 OK", [JSON], [b"ab", b"cd"], id="chunked"),
        pytest.param("GET", "200 OK", [("Content-Length", "4")], [b"ab", b"cd"], id="in pieces"),
        pytest.param("GET", "200 OK", [("Content-Length", "9")], [b"short"], id="short"),
        pytest.param("GET", "200 OK", [("Content-Length", "4")], [b"abcdef"], id="long"),
        pytest.param("GET", "200 OK", [("Content-Length", "4")], [b"", b"abcd"], id="empty first"),
        pytest.param("GET", "204 No Content", [("Content-Length", "0")], [b""], id="204"),
    ],
)
def test_anything_else_is_sent_as_gunicorn_sends_it(
    method: str, status: str, headers: list[tuple[str, str]], body: list[bytes]
) -> None:
    """No whole body, or more than one piece: gunicorn's own bytes, sends and counts."""
    stock = answer(wsgi.Response, status, headers, body, method)
    assert stock == answer(OneSendResponse, status, headers, body, method)


def test_what_comes_after_a_whole_body_is_dropped_as_gunicorn_drops_it() -> None:
    """The first write was the whole declared body: it goes in one send, the rest never."""
    headers = [("Content-Length", "2")]
    stock = answer(wsgi.Response, "200 OK", headers, [b"ab", b"cd"])
    assert stock._replace(sends=1) == answer(OneSendResponse, "200 OK", headers, [b"ab", b"cd"])
    assert stock.wire.endswith(b"\r\n\r\nab")


@pytest.mark.parametrize(
    ("timeout", "tls"), [(5.0, False), (None, True)], ids=["socket timeout", "TLS"]
)
def test_a_socket_with_a_timeout_or_tls_gets_gunicorns_sends(
    timeout: float | None, tls: bool
) -> None:
    """sendall keeps its one deadline for the whole answer; SSL has no sendmsg."""
    headers = [JSON, ("Content-Length", str(len(BODY)))]
    stock = answer(wsgi.Response, "200 OK", headers, [BODY], timeout=timeout, tls=tls)
    assert 2 == stock.sends
    assert stock == answer(OneSendResponse, "200 OK", headers, [BODY], timeout=timeout, tls=tls)


def test_the_date_is_this_seconds() -> None:
    """The Date header is the current second's, in HTTP's format."""
    before = int(time.time())
    date = http_date()
    after = int(time.time())
    assert date in {formatdate(second, usegmt=True) for second in range(before, after + 1)}


def test_the_date_moves_on_with_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Formatted once a second, and again when the second changes."""
    clock = SimpleNamespace(time=lambda: 86_400.2)
    monkeypatch.setattr(gunicorn_response, "time", clock)
    assert "Fri, 02 Jan 1970 00:00:00 GMT" == http_date()
    clock.time = lambda: 86_401.0
    assert "Fri, 02 Jan 1970 00:00:01 GMT" == http_date()


NAMES = st.one_of(
    st.sampled_from(
        [
            "ETag",
            "X-Request-ID",
            "Content-Length",
            "Connection",
            "Upgrade",
            "Keep-Alive",
            "Transfer-Encoding",
            "content-type",
            "X Bad",
            "X-Bad:",
            "",
            "Ä",
        ]
    ),
    st.text(max_size=12),
    st.integers(),
)
VALUES = st.one_of(
    st.sampled_from(["12", " 7\t", "upgrade", "websocket", "x\r\ny", "caf\xe9", "\u20ac", "-1"]),
    st.text(max_size=12),
    st.binary(max_size=4),
)


def processed(response_class: type[wsgi.Response], headers: list[Any]) -> tuple[Any, ...]:
    """What `process_headers` keeps and notes, or what it raises, and what it kept first."""
    cfg = Config()
    request = SimpleNamespace(version=(1, 1), method="GET", should_close=lambda: False)
    resp = response_class(request, None, cfg)
    try:
        resp.process_headers(headers)
    except Exception as exc:  # the same exception, with the same words, is the point
        return type(exc), str(exc), resp.headers
    return resp.headers, resp.response_length, resp.upgrade


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=6))
def test_headers_are_checked_and_kept_as_gunicorn_does(headers: list[Any]) -> None:
    """Any headers, valid or not, seen before or not: gunicorn's result, or its error."""
    assert processed(wsgi.Response, headers) == processed(OneSendResponse, headers)


class ShortSends:
    """A socket whose kernel takes at most `most` bytes a call."""

    def __init__(self, most: int) -> None:
        self.most = most
        self.got = bytearray()

    def sendmsg(self, buffers: Sequence[memoryview]) -> int:
        taken = b"".join(bytes(b) for b in buffers)[: self.most]
        self.got += taken
        return len(taken)


@pytest.mark.parametrize("most", [1, 3, 4, 5, 100])
def test_a_send_the_kernel_cut_short_is_finished(most: int) -> None:
    """Every byte of every part, in order, however the sends are cut."""
    sock = ShortSends(most)
    send_all(sock, b"head", b"", b"body!")  # type: ignore[arg-type]  # a stand-in socket
    assert b"headbody!" == bytes(sock.got)


def test_the_worker_answers_with_one_send_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    """oppscan's worker installs them before it serves (gthread's own start aside)."""
    monkeypatch.setattr(wsgi, "Response", wsgi.Response)  # put back after the test
    monkeypatch.setattr(ThreadWorker, "init_process", lambda self: None)
    Worker.init_process(Worker.__new__(Worker))
    client, server = socket.socketpair()
    with client, server:
        client.sendall(b"GET / HTTP/1.1\r\nHost: oppscan\r\n\r\n")
        cfg = Config()
        request = next(iter(RequestParser(cfg, server, CLIENT)))
        resp, _ = wsgi.create(request, server, CLIENT, SERVER, cfg)  # as gthread calls it
    assert isinstance(resp, OneSendResponse)
