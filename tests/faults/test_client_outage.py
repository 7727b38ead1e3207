"""The Python client rides out a Redis outage in the middle of a wait: the 503s with
Retry-After are waited out, and the scan's results come once Redis is back."""

from __future__ import annotations

import signal
import threading

from oppscan.client import Client, ScanState
from oppscan.storage import EmbeddedRedis
from tests.faults.conftest import ServerFactory
from tests.support.recording import Recording


def test_a_redis_outage_mid_wait_is_ridden_out(
    make_server: ServerFactory, store_server: EmbeddedRedis
) -> None:
    """Redis stops for 3 s while the client waits: it sees 503s, waits as told, and
    gets the complete results once Redis answers again."""
    server = make_server()
    recording = Recording()
    stopped = threading.Event()

    def on_progress(state: ScanState) -> None:
        if state.completed >= 1 and not stopped.is_set():
            stopped.set()
            store_server.signal(signal.SIGSTOP)
            threading.Timer(3.0, store_server.signal, args=(signal.SIGCONT,)).start()

    with Client(server.url, server.token("ana"), transport=recording, spread=True) as client:
        scan = client.discover(symbols=["BTC-USD", "ETH-USD", "SOL-USD", "ADA-USD"])
        results = scan.wait(on_progress=on_progress, timeout=90, interval=0.1)
    assert stopped.is_set()
    assert "complete" == results.status
    assert 503 in recording.statuses
    assert 404 not in recording.statuses
