"""`oppscan scan` and its kin as a person and a script run them, against a real
gunicorn with 4 workers: JSON and CSV for scripts, exit codes, and the live
progress bar and final table in a pseudo-terminal, Ctrl-C included."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oppscan.client import Client
from oppscan.processes import free_port
from tests.support.server import GunicornServer
from tests.support.terminal import CTRL_C, Terminal

FEW = "BTC-USD,ETH-USD,SOL-USD,DOGE-USD,XRP-USD,ADA-USD"


@pytest.fixture
def server(redis_url: str, tmp_path: Path) -> Iterator[GunicornServer]:
    """4 workers whose market data answers in 50 ms, one fetch at a time: a scan of a
    few symbols runs a couple of seconds, one of all 60 symbols over ten."""
    env = {"OPPSCAN_SYNTHETIC_LATENCY_MS": "50", "OPPSCAN_FETCH_CONCURRENCY": "1"}
    started = GunicornServer(redis_url, tmp_path, workers=4, env=env).start()
    yield started
    started.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of a command: no client settings of the caller's, a data dir of
    its own (a token is never signed with a secret of the developer's)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPPSCAN_URL", "OPPSCAN_TOKEN")}
    env["OPPSCAN_DATA_DIR"] = str(tmp_path / "client")
    return env


def oppscan(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oppscan.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_scan_json_prints_the_results_document(server: GunicornServer, env: dict[str, str]) -> None:
    """`oppscan scan --json` exits 0 once the scan completed, and stdout is the results
    document the API serves, nothing else."""
    done = oppscan(
        env, "scan", "--json", "--symbols", FEW, "--timeframe", "1h",
        "--url", server.url, "--token", server.token("ana"),
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    document = json.loads(done.stdout)
    assert ("complete", 14, 6) == (
        document["status"],
        document["metadata"]["strategies_completed"],
        document["metadata"]["symbols_scanned"],
    )
    assert "" == done.stderr
    with Client(server.url, server.token("ana")) as client:
        served = client.scan(document["scan_id"]).results()
    assert served is not None
    assert served.body == document


def test_results_csv_and_scans_with_url_and_token_from_the_environment(
    server: GunicornServer, env: dict[str, str]
) -> None:
    """With OPPSCAN_URL and OPPSCAN_TOKEN set, `results --csv` prints every opportunity
    of a finished scan, ranked, and `scans --json` lists it."""
    with Client(server.url, server.token("ben")) as client:
        results = client.discover(symbols=FEW.split(","), timeframe="4h").wait(timeout=60)
    scan_id = results.body["scan_id"]
    env |= {"OPPSCAN_URL": server.url, "OPPSCAN_TOKEN": server.token("ben")}
    done = oppscan(env, "results", scan_id, "--csv")
    assert 0 == done.returncode, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert len(results.opportunities) == len(rows)
    assert [str(i) for i in range(1, len(rows) + 1)] == [row["rank"] for row in rows]
    assert [(o["symbol"], o["strategy"]) for o in results.opportunities] == [
        (row["symbol"], row["strategy"]) for row in rows
    ]
    listed = oppscan(env, "scans", "--json")
    assert 0 == listed.returncode, listed.stderr
    assert [scan_id] == [s["scan_id"] for s in json.loads(listed.stdout)["scans"]]


def test_nothing_listening_exits_3(env: dict[str, str]) -> None:
    """No service at the URL: exit 3, one line on stderr naming the URL, nothing on stdout."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    done = oppscan(env, "scan", "--json", "--url", nowhere, "--token", "t")
    assert 3 == done.returncode
    assert f"oppscan: no answer from {nowhere}: ConnectError" in done.stderr
    assert 1 == done.stderr.count("\n")
    assert "" == done.stdout


def test_a_refused_request_exits_1_with_the_servers_detail(
    server: GunicornServer, env: dict[str, str]
) -> None:
    """A bad token and an unknown strategy: exit 1, the server's code and detail on stderr."""
    bad_token = oppscan(env, "scans", "--url", server.url, "--token", "not-a-token")
    assert (1, "oppscan: 401 unauthorized: ") == (
        bad_token.returncode,
        bad_token.stderr[: len("oppscan: 401 unauthorized: ")],
    )
    unknown = oppscan(
        env, "scan", "--strategies", "no_such", "--url", server.url, "--token", server.token("cy")
    )
    assert 1 == unknown.returncode
    assert unknown.stderr.startswith("oppscan: 400 unknown_strategy: ")
    assert "momentum" in unknown.stderr  # the detail lists the valid ones


def test_results_of_a_running_scan_then_cancel_it(
    server: GunicornServer, env: dict[str, str]
) -> None:
    """`results` of a running scan prints what it found so far and exits 4; `cancel`
    exits 0; following the scan then exits 1: it was cancelled."""
    with Client(server.url, server.token("dan")) as client:
        scan = client.discover()  # every symbol: runs for a while
        token = ["--url", server.url, "--token", server.token("dan")]
        so_far = oppscan(env, "results", scan.scan_id, "--json", *token)
        assert 4 == so_far.returncode, so_far.stderr
        assert (True, scan.scan_id) == (
            json.loads(so_far.stdout)["partial"],
            json.loads(so_far.stdout)["scan_id"],
        )
        assert "has not finished" in so_far.stderr
        cancelled = oppscan(env, "cancel", scan.scan_id, *token)
        assert 0 == cancelled.returncode, cancelled.stderr
        assert f"oppscan: {scan.scan_id} cancel" in cancelled.stderr
        followed = oppscan(env, "status", scan.scan_id, "--follow", "--json", *token)
    assert 1 == followed.returncode
    assert "cancelled" == json.loads(followed.stdout)["status"]
    assert f"oppscan: {scan.scan_id} cancelled: " in followed.stderr


def in_a_terminal(env: dict[str, str], *args: str) -> Terminal:
    env = {**env, "TERM": "xterm-256color"}
    for name in ("COLUMNS", "LINES", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)  # rich must see a plain interactive terminal of its own size
    return Terminal.spawn([sys.executable, "-m", "oppscan.cli", *args], env, columns=100)


def test_a_scan_in_a_terminal_shows_live_progress_then_the_table(
    server: GunicornServer, env: dict[str, str]
) -> None:
    """In a terminal the progress bar is redrawn in place (strategies done of 14,
    opportunities so far) until the scan completes; then the table of the top 5."""
    args = ("scan", "--symbols", FEW, "--timeframe", "15m", "--top", "5")
    terminal = in_a_terminal(env, *args, "--url", server.url, "--token", server.token("eve"))
    try:
        terminal.read_until(r"\d+/14 strategies · \d+ opportunities · \d:\d\d:\d\d", 30)
        assert 0 == terminal.wait(60), terminal.text
    finally:
        terminal.close()
    frames = list(
        re.finditer(r"(\w+) +\S+ +(\d+)/14 strategies · \d+ opportunities", terminal.text)
    )
    assert ("complete", "14") == frames[-1].groups()
    assert len(frames) > 1  # redrawn, not printed once at the end
    assert b"\x1b[2K" in terminal.raw  # each redraw erases the line it replaces
    table = terminal.text[frames[-1].end() :]
    assert re.search(r"top 5 of \d+ opportunities", table), table
    assert re.search(r"symbol +strategy +side +score +entry +stop +target +return", table)
    assert 5 == len(re.findall(r"^\S+-USD +\w+ +(?:long|short) +\d\.\d\d ", table, re.M)), table


def test_ctrl_c_stops_following_and_the_scan_goes_on(
    server: GunicornServer, env: dict[str, str]
) -> None:
    """Ctrl-C typed into the terminal: exit 130 and how to follow the scan again; the
    scan keeps running on the server, and following it again reaches its results."""
    token = server.token("fay")
    terminal = in_a_terminal(env, "scan", "--url", server.url, "--token", token)
    try:
        terminal.read_until(r"\d+/14 strategies", 30)
        terminal.press(CTRL_C)
        assert 130 == terminal.wait(30), terminal.text
    finally:
        terminal.close()
    hint = re.search(r"follow it again with: oppscan status --follow (scan_\w+)", terminal.text)
    assert hint is not None, terminal.text
    assert f"stopped following {hint[1]}; it keeps running on the server" in terminal.text
    with Client(server.url, token) as client:
        assert client.scan(hint[1]).status().status in ("queued", "scanning")
    again = oppscan(
        env, "status", "--follow", hint[1], "--json", "--url", server.url, "--token", token
    )
    assert 0 == again.returncode, again.stderr
    assert "complete" == json.loads(again.stdout)["status"]
