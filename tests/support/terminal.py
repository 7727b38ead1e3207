"""A command run in a pseudo-terminal, as a person at a terminal runs it.

`pty.fork()` makes the pty the child's controlling terminal, so the child sees a
terminal on stdin, stdout and stderr (rich draws its live display) and a Ctrl-C
typed into it reaches the child as SIGINT from the terminal driver. Every wait
is bounded: the output is read with `select` against a deadline, and the exit is
awaited on a pidfd.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# CSI sequences (colours, cursor moves, erasing) and OSC ones (titles, links).
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
CTRL_C = b"\x03"


@dataclass
class Terminal:
    pid: int
    fd: int  # the pty's master side
    pidfd: int  # readable once the child has exited
    raw: bytearray = field(default_factory=bytearray)
    closed: bool = False  # the child's side of the pty is gone: nothing more to read
    exit_code: int | None = None

    @classmethod
    def spawn(
        cls, argv: Sequence[str], env: Mapping[str, str], columns: int = 120, rows: int = 40
    ) -> Terminal:
        """Run `argv` (a path first) in a new pty of `columns` x `rows`."""
        pid, fd = pty.fork()
        if pid == 0:  # the child: size its terminal, then become the command
            try:
                size = struct.pack("HHHH", rows, columns, 0, 0)
                fcntl.ioctl(pty.STDOUT_FILENO, termios.TIOCSWINSZ, size)
                os.execve(argv[0], list(argv), dict(env))
            finally:
                os._exit(127)
        return cls(pid, fd, os.pidfd_open(pid))

    @property
    def text(self) -> str:
        """What the terminal was sent, without escape sequences; a line redrawn in place
        (a carriage return without a newline) shows as one line per drawing."""
        decoded = self.raw.decode("utf-8", errors="replace")
        return ESCAPES.sub("", decoded).replace("\r\n", "\n").replace("\r", "\n")

    def read_until(self, pattern: str, timeout: float) -> re.Match[str]:
        """Read until the text matches `pattern`; AssertionError with the text past
        `timeout` or once the child closed the terminal without printing it."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.text)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"no {pattern!r} within {timeout} s in:\n{self.text}")
            self._read(left)
        return found

    def press(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout: float) -> int:
        """The child's exit code, reading its output until it exits, within `timeout`."""
        deadline = time.monotonic() + timeout
        while self.exit_code is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"still running after {timeout} s:\n{self.text}")
            watched = [self.pidfd] if self.closed else [self.pidfd, self.fd]
            ready, _, _ = select.select(watched, [], [], left)
            if self.pidfd in ready:
                while self._read(0):  # what it wrote before exiting is still buffered
                    pass
                self.exit_code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
            elif ready:
                self._read(0)
        return self.exit_code

    def close(self) -> None:
        """Kill the child if it still runs; release the descriptors."""
        if self.exit_code is None:
            os.kill(self.pid, signal.SIGKILL)
            self.exit_code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        os.close(self.pidfd)
        os.close(self.fd)

    def _read(self, timeout: float) -> bool:
        """Read a chunk if one arrives within `timeout`; whether one did."""
        if self.closed:
            return False
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError as exc:  # EIO: every copy of the child's side is closed
            if exc.errno != errno.EIO:
                raise
            self.closed = True
            return False
        self.raw += chunk
        self.closed = not chunk
        return bool(chunk)
