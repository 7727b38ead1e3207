"""The gunicorn worker oppscan runs: gthread, with signal handlers that only set flags
and responses sent in one piece.

gunicorn's own SIGINT/SIGQUIT handler raises `SystemExit` from inside the
handler, so at whatever line the main thread runs when the signal lands. A
Ctrl-C reaches every worker twice (the terminal's SIGINT to the process
group, then the master's SIGQUIT), and a worker that is still booting runs
`start_runtime` on its main thread: the exception cut that short, left a
registry actor (a non-daemon thread) that `worker_exit` could not see, and
the worker hung at exit until the master SIGKILLed it. Here a signal only
records how to stop and wakes the main loop; the stop itself runs where the
worker is between two things (`worker_exit`), with its runtime whole.
"""

from __future__ import annotations

import os
import queue
import signal
from types import FrameType

import pykka.debug
from gunicorn.workers.gthread import ThreadWorker

from oppscan import gunicorn_response

INTERRUPTED = 128 + signal.SIGINT  # a shell's exit status for "stopped by Ctrl-C"


class Worker(ThreadWorker):  # type: ignore[misc] # gunicorn is untyped
    """SIGTERM: a graceful stop. SIGINT/SIGQUIT: a quick one. A second SIGINT: at once.
    SIGUSR1: reopen the log files and log every thread's stack (stuck actors).
    A whole body goes out with its headers in one send (`gunicorn_response`)."""

    quick = False  # stop without waiting for running strategies
    _interrupts = 0
    # From fork until `init_signals` the master's handlers are still installed:
    # they queue what arrives on the master's queue (`post_fork` hands it over).
    inherited_signals: queue.SimpleQueue[int] | None = None

    def init_process(self) -> None:
        gunicorn_response.install()  # before the first request; this process only
        super().init_process()

    def init_signals(self) -> None:
        super().init_signals()
        self.replay_inherited_signals()

    def replay_inherited_signals(self) -> None:
        """Act on what arrived between fork and now, as these handlers would have."""
        pending = self.inherited_signals
        while pending is not None and not pending.empty():
            sig = pending.get_nowait()
            if sig in (signal.SIGINT, signal.SIGQUIT):
                self.handle_quit(sig, None)
            elif sig == signal.SIGTERM:
                self.handle_exit(sig, None)

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:  # Ctrl-C again: the user will not wait
                os._exit(INTERRUPTED)
        self.quick = True
        self.handle_exit(sig, frame)  # gthread's: not alive any more, wake the main loop

    def handle_usr1(self, sig: int, frame: FrameType | None) -> None:
        super().handle_usr1(sig, frame)
        pykka.debug.log_thread_tracebacks()
