"""gunicorn's HTTP/1 response, sending a body handed over whole with its headers
in one system call.

Stock gunicorn sends the head (status line and headers), then the body: two
sends per answer. Each send is a pass through the TCP stack, and on loopback
or a LAN also a wakeup of the client. oppscan answers nearly every request
with one prepared body of known length (Falcon's `resp.data` or rendered
media), so here that body goes with the head in one `sendmsg`, without
copying it. In the benchmarks this is about 40 us of worker CPU per status
read (`benchmarks/README.md`, figure 3a).

The Date header is formatted once a second, not once a response (gunicorn's
`http_date` costs more than the rest of the head together). A header name
gunicorn has accepted once is not checked against the token grammar again:
the check depends on the name alone. Every value is checked, as gunicorn does.

Anything else (a body in pieces, a chunked or bodiless answer, TLS, a socket
with a timeout) goes through gunicorn's own code. The bytes on the wire are
the same either way. This is gunicorn 27's `Response` (pyproject pins it).
"""

from __future__ import annotations

import socket
import time
from email.utils import formatdate

from gunicorn import util
from gunicorn.http import wsgi


class OneSendResponse(wsgi.Response):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's response, writing a whole body with its head in one send."""

    def write(self, arg: bytes) -> None:
        if not self._sends_whole(arg):
            super().write(arg)
            return
        head = self.head()
        self.headers_sent = True
        send_all(self.sock, head, arg)
        self.sent = len(arg)

    def process_headers(self, headers: list[tuple[str, str]]) -> None:
        """gunicorn's checks and bookkeeping; a name it accepted before skips the
        name's checks, never the value's."""
        for name, value in headers:
            if (
                type(name) is str
                and name in _plain_names
                and type(value) is str
                and wsgi.HEADER_VALUE_RE.fullmatch(value)
            ):
                self.headers.append((name, value.strip(" \t")))
            else:
                super().process_headers([(name, value)])  # raises what gunicorn raises
                _learn(name)

    def default_headers(self) -> list[str]:
        """gunicorn's status line, Server, Date, Connection and Transfer-Encoding."""
        if self.upgrade:
            connection = "upgrade"
        elif self.should_close():
            connection = "close"
        else:
            connection = "keep-alive"
        major, minor = self.req.version
        lines = [
            f"HTTP/{major}.{minor} {self.status}\r\n",
            f"Server: {self.version}\r\n",
            f"Date: {http_date()}\r\n",
            f"Connection: {connection}\r\n",
        ]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked\r\n")
        return lines

    def head(self) -> bytes:
        """The status line and headers, as gunicorn's `send_headers` writes them."""
        lines: list[str] = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        return ("".join(lines) + "\r\n").encode("latin-1")

    def _sends_whole(self, arg: object) -> bool:
        """True for the first write of a body that is all there is: bytes of the
        declared Content-Length, unchunked, over plain TCP on a blocking socket
        (with a timeout, `sendall`'s one deadline for the whole answer holds)."""
        return (
            not self.headers_sent
            and isinstance(arg, bytes)
            and self.response_length == len(arg)
            and not self.chunked
            and not self._omits_body
            and not self.cfg.is_ssl  # SSL sockets do not implement sendmsg
            and self.sock.gettimeout() is None
        )


# Names gunicorn accepted that it keeps as they are: not Content-Length, not
# hop-by-hop. An app sends a handful; the bound is for one that makes names up.
_plain_names: set[str] = set()
MAX_PLAIN_NAMES = 256


def _learn(name: str) -> None:
    if type(name) is not str:  # a subclass may compare as it likes
        return
    lower = name.lower()
    kept = lower != "content-length" and not util.is_hoppish(lower)
    if kept and len(_plain_names) < MAX_PLAIN_NAMES:
        _plain_names.add(name)


_date: tuple[int, str] = (0, "")  # (second, its Date value), replaced whole: thread-safe


def http_date() -> str:
    """Now, as a Date header value (RFC 9110 5.6.7), formatted once a second."""
    global _date
    now = int(time.time())
    second, value = _date
    if second != now:
        value = formatdate(now, usegmt=True)
        _date = (now, value)
    return value


def send_all(sock: socket.socket, *parts: bytes) -> None:
    """Every byte of `parts`, in order, on a blocking socket: one `sendmsg`, more
    only if the kernel takes less (a signal arrived during the send)."""
    views = [memoryview(part) for part in parts if part]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = views[0][sent:]


def install() -> None:
    """Make every HTTP/1 response of this process a `OneSendResponse`: gunicorn's
    `wsgi.create` builds them from the module's `Response` name."""
    wsgi.Response = OneSendResponse
