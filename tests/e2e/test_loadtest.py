"""`oppscan loadtest` end to end: it starts Redis and two gunicorn configurations itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_loadtest_measures_two_configurations(tmp_path: Path) -> None:
    """Two worker counts are loaded with no 404 or 5xx; JSON, PNG and recommendation appear."""
    out, chart = tmp_path / "lt.json", tmp_path / "lt.png"
    command = [
        sys.executable, "-m", "oppscan.cli", "loadtest",
        "--workers", "1,2", "--threads", "2", "--duration", "4",
        "--users", "2", "--pollers", "4",
        "--out", str(out), "--chart", str(chart),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    print(done.stdout)
    assert 0 == done.returncode, done.stdout + done.stderr
    configurations = json.loads(out.read_text())["configurations"]
    assert [1, 2] == [c["workers"] for c in configurations]
    for figures in configurations:
        assert figures["requests"] > 0
        assert (0, 0, 0) == (
            figures["not_found"],
            figures["server_errors"],
            figures["unavailable"],
        )
        assert figures["scans_completed"] > 0
    assert b"\x89PNG\r\n\x1a\n" == chart.read_bytes()[:8]
    assert "Recommended:" in done.stdout
