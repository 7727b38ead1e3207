"""`oppscan logs`: matching events from several streams, in time order."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from oppscan import log_filter
from oppscan.logs import UserField


def write(path: Path, *events: dict[str, object], noise: str = "") -> str:
    path.write_text(noise + "".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def run(files: list[str], **wanted: str) -> list[dict[str, object]]:
    unset: dict[str, object] = {"scan": None, "request": None, "user": None}
    args = argparse.Namespace(files=files, **{**unset, **wanted})
    out = io.StringIO()
    assert 0 == log_filter.run(args, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_scan_s_events_from_two_hosts_come_out_in_time_order(tmp_path: Path) -> None:
    """Lines that are not JSON are skipped; matches are sorted by timestamp."""
    a = write(
        tmp_path / "a.log",
        {"event": "scan_started", "scan_id": "s1", "timestamp": "2026-01-01T00:00:01Z"},
        {"event": "request", "scan_id": "s2", "timestamp": "2026-01-01T00:00:02Z"},
        {"event": "scan_finished", "scan_id": "s1", "timestamp": "2026-01-01T00:00:09Z"},
        noise="oppscan ready at http://127.0.0.1:8000\n",
    )
    b = write(
        tmp_path / "b.log",
        {"event": "request", "scan_id": "s1", "timestamp": "2026-01-01T00:00:05Z"},
    )
    assert ["scan_started", "request", "scan_finished"] == [
        e["event"] for e in run([a, b], scan="s1")
    ]


def test_a_user_is_found_by_name_in_events_that_log_the_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The digest is computed with the secret at hand, as the servers compute it; a
    read of another user's scan counts for its owner too."""
    monkeypatch.setenv("OPPSCAN_SECRET", "s3cret")
    ana = UserField("hash", "s3cret")("ana")
    logged = write(
        tmp_path / "w.log",
        {"event": "request", "user": ana, "timestamp": "1"},
        {"event": "request", "user": UserField("hash", "s3cret")("ben"), "timestamp": "2"},
        {"event": "scan_of_another_user", "user": "u-x", "owner_user": ana, "timestamp": "3"},
    )
    assert ["1", "3"] == [e["timestamp"] for e in run([logged], user="ana")]


def test_without_a_filter_it_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(files=[], scan=None, request=None, user=None)
    assert 2 == log_filter.run(args, io.StringIO())
    assert "needs --scan, --request or --user" in capsys.readouterr().err
