"""The gunicorn worker's signal handlers: they only record how to stop."""

from __future__ import annotations

import logging
import os
import queue
import signal
from types import SimpleNamespace

import pytest
from gunicorn.workers.gthread import PollableMethodQueue

from oppscan.gunicorn_worker import INTERRUPTED, Worker


def idle_worker() -> Worker:
    """A worker as its main loop sees it, without a master or sockets."""
    worker: Worker = Worker.__new__(Worker)
    worker.alive = True
    worker.method_queue = PollableMethodQueue()
    worker.method_queue.init()
    return worker


def test_ctrl_c_asks_for_a_quick_stop_and_raises_nothing() -> None:
    """SIGINT, then the master's SIGQUIT for the same Ctrl-C: a quick stop, no exception."""
    worker = idle_worker()
    worker.handle_quit(signal.SIGINT, None)
    worker.handle_quit(signal.SIGQUIT, None)
    assert (True, False) == (worker.quick, worker.alive)


def test_sigterm_asks_for_a_graceful_stop() -> None:
    """SIGTERM stops the main loop and leaves the running strategies their time."""
    worker = idle_worker()
    worker.handle_exit(signal.SIGTERM, None)
    assert (False, False) == (worker.quick, worker.alive)


def test_a_second_ctrl_c_ends_the_worker_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second SIGINT exits on the spot, with a shell's status for Ctrl-C."""
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    worker = idle_worker()
    worker.handle_quit(signal.SIGINT, None)
    assert [] == exits
    worker.handle_quit(signal.SIGINT, None)
    assert [INTERRUPTED] == exits


def test_a_ctrl_c_before_the_worker_had_its_handlers_is_not_lost() -> None:
    """What the master's handlers queued in the new worker before it installed its
    own is acted on once it has: here a quick stop."""
    worker = idle_worker()
    worker.inherited_signals = queue.SimpleQueue()
    for sig in (signal.SIGCHLD, signal.SIGINT):
        worker.inherited_signals.put(sig)
    worker.replay_inherited_signals()
    assert (True, False) == (worker.quick, worker.alive)


def test_sigusr1_logs_every_threads_stack(caplog: pytest.LogCaptureFixture) -> None:
    """`kill -USR1` on a worker logs where each thread is (stuck actors)."""
    worker = idle_worker()
    worker.log = SimpleNamespace(reopen_files=lambda: None)
    pykka_log = logging.getLogger("pykka")  # its own handler: logs.configure may stop propagation
    pykka_log.addHandler(caplog.handler)
    try:
        worker.handle_usr1(signal.SIGUSR1, None)
    finally:
        pykka_log.removeHandler(caplog.handler)
    assert "test_sigusr1_logs_every_threads_stack" in caplog.text
