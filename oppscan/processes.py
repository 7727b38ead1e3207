"""Child processes oppscan starts (redis-server, gunicorn): own session, output to a log."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path


def spawn(
    argv: Sequence[str],
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own (a terminal's Ctrl-C reaches only us)."""
    with log_path.open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - argv is built by oppscan, never by a client
            list(argv),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def terminate(process: subprocess.Popen[bytes] | None, timeout: float) -> bool:
    """SIGTERM, then SIGKILL to its whole session after `timeout`; True if it stopped in time."""
    if process is None or process.poll() is not None:
        return True
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return False
    return True
