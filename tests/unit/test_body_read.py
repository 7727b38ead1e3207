"""Reading a request body under its timeout leaves the socket as gunicorn had it."""

from __future__ import annotations

import socket

import falcon
import falcon.testing
import pytest

from oppscan.http.errors import ApiError
from oppscan.http.validation import read_json_object


def body_request(server: socket.socket, declared: int) -> falcon.Request:
    """A request whose body is read from `server`, as gunicorn hands it over."""
    environ = falcon.testing.create_environ(
        method="POST", headers={"Content-Type": "application/json"}
    )
    environ |= {
        "CONTENT_LENGTH": str(declared),
        "wsgi.input": server.makefile("rb"),
        "gunicorn.socket": server,
    }
    return falcon.Request(environ)


def test_a_body_read_in_time_leaves_the_socket_blocking() -> None:
    """The answer is then written on a socket without the body's timeout."""
    client, server = socket.socketpair()
    with client, server:
        client.sendall(b'{"a": 1}')
        assert {"a": 1} == read_json_object(body_request(server, 8), 1024, 5.0)
        assert server.gettimeout() is None


def test_a_body_too_slow_is_a_408_and_leaves_the_socket_blocking() -> None:
    """The 408 is written on a socket without the body's timeout too."""
    client, server = socket.socketpair()
    with client, server:
        client.sendall(b'{"a": ')
        with pytest.raises(ApiError) as refused:
            read_json_object(body_request(server, 20), 1024, 0.2)
        assert 408 == refused.value.status_code
        assert server.gettimeout() is None
