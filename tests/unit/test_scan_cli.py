"""`oppscan scan`, `status`, `results`, `cancel`, `scans` against a fake API behind
`httpx.MockTransport`: arguments, exit codes, what goes to stdout and stderr."""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from rich.console import Console

from oppscan import scan_cli
from oppscan.cli import main
from oppscan.client import (
    BadRequest,
    Client,
    Conflict,
    NotFound,
    OppscanError,
    RateLimited,
    ScanState,
    ServiceUnreachable,
    Unauthorized,
    Unavailable,
)
from oppscan.scan_cli import Exit, exit_code
from oppscan.scan_view import CSV_COLUMNS, ScanProgress
from oppscan.settings import Settings

SCAN_ID = "scan_" + "ab" * 16
SECRET = "unit-secret-0123456789abcdefghijklmnop"
BEST = {
    "symbol": "BTC-USD",
    "strategy": "momentum",
    "side": "long",
    "score": 0.91,
    "entry_price": 64000.5,
    "stop_loss": 63000.0,
    "take_profit": 66000.0,
    "expected_return": 0.03124,
    "risk_reward": 2.0,
    "timeframe": "1h",
    "signal": "close above the 20-bar high, volume 2x",
    "as_of": "2024-05-01T10:00:00.000Z",
}
NEXT = {
    **BEST,
    "symbol": "DOGE-USD",
    "strategy": "rsi_reversal",
    "side": "short",
    "score": 0.5,
    "entry_price": 0.1234567,
    "stop_loss": 0.13,
    "take_profit": 0.11,
}


def status_body(status: str, completed: int, found: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {
        "scan_id": SCAN_ID,
        "status": status,
        "progress": {
            "strategies_completed": completed,
            "total_strategies": 2,
            "percentage": completed * 50.0,
            "opportunities_found_so_far": found,
        },
        "created_at": "2024-05-01T10:00:00.000Z",
        "updated_at": "2024-05-01T10:00:01.000Z",
        "completed_at": None if status == "scanning" else "2024-05-01T10:00:02.500Z",
    }
    if status in ("failed", "cancelled"):
        body["error"] = f"scan {status}: market source down"
    second = {"scanning": "running", "complete": "ok"}.get(status, "cancelled")
    body["strategies"] = {"momentum": "ok", "rsi_reversal": second}
    return body


def results_body(status: str = "complete") -> dict[str, Any]:
    body: dict[str, Any] = {
        "scan_id": SCAN_ID,
        "status": status,
        "opportunities": [BEST, NEXT],
        "strategy_performance": {
            "momentum": {"status": "ok", "opportunities": 1, "duration_ms": 40},
            "rsi_reversal": {"status": "ok", "opportunities": 1, "duration_ms": 30},
        },
        "metadata": {
            "total_strategies": 2,
            "strategies_completed": 2,
            "symbols_scanned": 2,
            "timeframe": "1h",
            "started_at": "2024-05-01T10:00:00.000Z",
            "completed_at": "2024-05-01T10:00:02.500Z",
            "duration_ms": 2500,
            "opportunities_total": 2,
        },
    }
    if status != "complete":
        body["error"] = f"scan {status}: market source down"
    return body


def partial_body() -> dict[str, Any]:
    """What a running scan's results answer (202) holds: its status and what it found."""
    return {
        **status_body("scanning", 1, 1),
        "partial": True,
        "opportunities": [BEST],
        "strategy_performance": {
            "momentum": {"status": "ok", "opportunities": 1, "duration_ms": 40},
        },
        "metadata": {"total_strategies": 2, "strategies_completed": 1, "opportunities_total": 1},
    }


@dataclass
class FakeApi:
    """The API of one scan, running for `polls` more status polls, then ended as `ending`.
    `errors` maps a method and path to the error answer it gets instead."""

    ending: str = "complete"
    polls: int = 0
    errors: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    raises: Callable[[httpx.Request], None] | None = None
    discovered: Mapping[str, bool] = field(default_factory=dict)  # deduplicated, cached
    seen: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if self.raises is not None:
            self.raises(request)
        route = f"{request.method} {request.url.path.removeprefix('/api/v1/opportunities')}"
        if route in self.errors:
            status, code = self.errors[route]
            detail = {"error": code, "detail": f"{code} said the server"}
            return httpx.Response(status, json=detail, headers={"Retry-After": "1"})
        return self._answer(route)

    def _answer(self, route: str) -> httpx.Response:
        if route == "POST /discover":
            body = {"scan_id": SCAN_ID, "status": "queued", **self.discovered}
            return httpx.Response(202, json=body)
        if route == f"GET /status/{SCAN_ID}":
            running, self.polls = self.polls > 0, self.polls - 1
            now = status_body("scanning", 1, 1) if running else status_body(self.ending, 2, 2)
            return httpx.Response(200, json=now)
        if route == f"GET /results/{SCAN_ID}":
            if self.polls > 0:
                return httpx.Response(202, json=partial_body())
            return httpx.Response(200, json=results_body(self.ending))
        if route == f"DELETE /scans/{SCAN_ID}":
            return httpx.Response(202, json=status_body("scanning", 1, 1))
        if route == "GET /scans":
            return httpx.Response(200, json={"scans": [status_body("complete", 2, 2)]})
        return httpx.Response(404, json={"error": "not_found", "detail": "no such scan"})


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """Runs a client command against a FakeApi; no real sleeping, no real network."""
    for name in ("OPPSCAN_URL", "OPPSCAN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPPSCAN_SECRET", SECRET)

    def run(argv: list[str], api: Callable[[httpx.Request], httpx.Response] | None = None) -> Run:
        transport = httpx.MockTransport(api or FakeApi())

        def connect(url: str, token: str) -> Client:
            return Client(url, token, transport=transport, sleep=lambda _: None)

        code = scan_cli.run(parse(argv), connect)
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="oppscan")
    scan_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


# -- arguments -----------------------------------------------------------------------


def test_scan_arguments_are_parsed_into_lists_and_flags() -> None:
    """Comma lists become lists; the defaults are all strategies, all symbols, the
    service's timeframe, the top 20, a table, and the user demo."""
    asked = "--strategies momentum,rsi_reversal --symbols BTC-USD,ETH-USD --timeframe 1h"
    flags = "--force-refresh --top 5 --json --url http://h:1"
    args = parse(["scan", *asked.split(), *flags.split()])
    assert ["momentum", "rsi_reversal"] == args.strategies
    assert ["BTC-USD", "ETH-USD"] == args.symbols
    assert ("1h", True, 5, True, "http://h:1") == (
        args.timeframe,
        args.force_refresh,
        args.top,
        args.json,
        args.url,
    )
    defaults = parse(["scan"])
    assert (None, None, None, False, 20, False) == (
        defaults.strategies,
        defaults.symbols,
        defaults.timeframe,
        defaults.force_refresh,
        defaults.top,
        defaults.json,
    )
    assert (None, None, "demo") == (defaults.url, defaults.token, defaults.user)


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "--strategies", ","],
        ["scan", "--top", "0"],
        ["scan", "--top", "many"],
        ["results", SCAN_ID, "--csv", "--json"],
        ["results"],
        ["status"],
        ["cancel"],
        ["scans", "--limit", "-1"],
        ["scans", "--csv"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """argparse refuses what makes no sense, with exit status 2 and a usage line."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert 2 == exited.value.code
    assert "usage: oppscan" in capsys.readouterr().err


# -- exit codes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ServiceUnreachable("http://h:1: ConnectError"), Exit.UNREACHABLE),
        (Unavailable(503, "store_unavailable", "Redis is down", 1.0), Exit.UNREACHABLE),
        (BadRequest(400, "unknown_strategy", "no such"), Exit.FAILED),
        (Unauthorized(401, "unauthorized", "expired"), Exit.FAILED),
        (NotFound(404, "not_found", "no such scan"), Exit.FAILED),
        (Conflict(409, "conflict", "finished"), Exit.FAILED),
        (RateLimited(429, "rate_limited", "slow down", 5.0), Exit.FAILED),
    ],
)
def test_errors_map_to_exit_codes(error: OppscanError, code: Exit) -> None:
    """No answer, or 503s past the client's waits: 3; any other refusal: 1."""
    assert code == exit_code(error)


def test_a_completed_scan_exits_0_with_the_results_document(cli: Callable[..., Run]) -> None:
    """`scan --json` follows the scan and prints the results document, nothing else."""
    run = cli(["scan", "--json", "--strategies", "momentum,rsi_reversal"], FakeApi(polls=3))
    assert Exit.OK == run.code
    assert results_body() == json.loads(run.out)
    assert "" == run.err


def test_a_scan_sends_what_was_asked(cli: Callable[..., Run]) -> None:
    """The discover body carries the strategies, symbols, timeframe and force_refresh."""
    api = FakeApi()
    cli(["scan", "--json", "--symbols", "BTC-USD", "--timeframe", "4h", "--force-refresh"], api)
    assert {"symbols": ["BTC-USD"], "timeframe": "4h", "force_refresh": True} == json.loads(
        api.seen[0].content
    )


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_a_failed_or_cancelled_scan_exits_1(cli: Callable[..., Run], ending: str) -> None:
    """The results are printed all the same; stderr says how the scan ended."""
    run = cli(["scan", "--json"], FakeApi(ending=ending))
    assert Exit.FAILED == run.code
    assert ending == json.loads(run.out)["status"]
    assert f"oppscan: {SCAN_ID} {ending}: scan {ending}: market source down\n" == run.err


def test_a_refusal_exits_1_with_the_servers_detail(cli: Callable[..., Run]) -> None:
    """A 400 prints one line on stderr with the server's code and detail; stdout stays empty."""
    api = FakeApi(errors={"POST /discover": (400, "unknown_strategy")})
    run = cli(["scan", "--strategies", "nope"], api)
    assert Exit.FAILED == run.code
    assert "oppscan: 400 unknown_strategy: unknown_strategy said the server\n" == run.err
    assert "" == run.out


def test_a_refused_token_signed_here_says_so(cli: Callable[..., Run]) -> None:
    """A 401 for a token signed with the local secret hints at --token; one line."""
    api = FakeApi(errors={"GET /scans": (401, "unauthorized")})
    run = cli(["scans"], api)
    assert Exit.FAILED == run.code
    assert 1 == run.err.count("\n")
    assert "401 unauthorized" in run.err
    assert "signed here with OPPSCAN_SECRET; pass --token" in run.err
    assert "signed here" not in cli(["scans", "--token", "t"], api).err


def test_a_503_past_the_clients_waits_exits_3(cli: Callable[..., Run]) -> None:
    """The client waits out 503s a few times; then the service counts as unreachable."""
    api = FakeApi(errors={f"GET /results/{SCAN_ID}": (503, "store_unavailable")})
    run = cli(["results", SCAN_ID], api)
    assert Exit.UNREACHABLE == run.code
    assert 6 == len(api.seen)  # the first try and 5 retries
    assert run.err.startswith("oppscan: 503 store_unavailable: ")


def test_no_answer_exits_3(cli: Callable[..., Run]) -> None:
    """A refused connection is ServiceUnreachable: exit 3, one line naming the URL."""

    def refuse(request: httpx.Request) -> None:
        raise httpx.ConnectError("Connection refused", request=request)

    run = cli(["scans", "--url", "http://127.0.0.1:9"], FakeApi(raises=refuse))
    assert Exit.UNREACHABLE == run.code
    assert run.err.startswith("oppscan: no answer from http://127.0.0.1:9: ConnectError")
    assert 1 == run.err.count("\n")


def test_an_answer_not_from_oppscan_asks_whether_the_url_is_right(
    cli: Callable[..., Run],
) -> None:
    """An error page of some other server (no oppscan error body) exits 1 with a hint."""

    def elsewhere(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="<html>Not Found</html>")

    run = cli(["scans", "--url", "http://127.0.0.1:8080"], elsewhere)
    assert Exit.FAILED == run.code
    assert "oppscan: 404 error: (is http://127.0.0.1:8080 an oppscan service?)\n" == run.err


def test_results_of_a_running_scan_exit_4_after_what_it_found_so_far(
    cli: Callable[..., Run],
) -> None:
    """Not finished is neither success nor failure: 4. What it found so far is printed
    all the same, and stderr says how to follow it."""
    api = FakeApi(polls=5)
    run = cli(["results", SCAN_ID, "--csv"], api)
    assert Exit.NOT_FINISHED == run.code
    assert ["BTC-USD"] == [row["symbol"] for row in csv.DictReader(io.StringIO(run.out))]
    assert (
        f"has not finished: what it found so far; follow it with: oppscan status --follow {SCAN_ID}"
        in run.err
    )
    assert partial_body() == json.loads(cli(["results", SCAN_ID, "--json"], api).out)
    table = cli(["results", SCAN_ID], api)
    assert (Exit.NOT_FINISHED, True) == (table.code, "top 1 of 1 opportunities so far" in table.out)
    assert f"{SCAN_ID} scanning 1 of 2 strategies so far" in " ".join(table.out.split())


def test_ctrl_c_while_following_exits_130_and_says_how_to_follow_again(
    cli: Callable[..., Run],
) -> None:
    """The scan keeps running on the server; stderr names it and the command to follow it."""

    def interrupt(request: httpx.Request) -> None:
        if "/status/" in request.url.path:
            raise KeyboardInterrupt

    run = cli(["scan"], FakeApi(raises=interrupt))
    assert Exit.INTERRUPTED == run.code
    assert f"stopped following {SCAN_ID}; it keeps running on the server" in run.err
    assert f"follow it again with: oppscan status --follow {SCAN_ID}" in run.err
    assert "" == run.out


def test_an_outage_while_following_names_the_scan(cli: Callable[..., Run]) -> None:
    """When the service goes away mid-scan, stderr says how to pick the scan up again."""

    def vanish(request: httpx.Request) -> None:
        if "/status/" in request.url.path:
            raise httpx.ConnectError("Connection refused", request=request)

    run = cli(["scan", "--json"], FakeApi(raises=vanish))
    assert Exit.UNREACHABLE == run.code
    assert f"follow it again with: oppscan status --follow {SCAN_ID}" in run.err.splitlines()[-1]


# -- where the service and the token come from -----------------------------------------


def test_url_and_token_come_from_flags_then_environment_then_defaults(
    cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--url/--token win over OPPSCAN_URL/OPPSCAN_TOKEN, which win over the default URL
    and a token signed here for --user with the local secret."""
    api = FakeApi()
    cli(["scans", "--user", "zoe"], api)
    assert "http://127.0.0.1:8000/api/v1/opportunities/scans?limit=50" == str(api.seen[-1].url)
    signed = api.seen[-1].headers["Authorization"].removeprefix("Bearer ")
    assert "zoe" == jwt.decode(signed, SECRET, algorithms=["HS256"])["sub"]
    monkeypatch.setenv("OPPSCAN_URL", "http://env:1")
    monkeypatch.setenv("OPPSCAN_TOKEN", "env-token")
    cli(["scans"], api)
    assert ("env", "Bearer env-token") == (
        api.seen[-1].url.host,
        api.seen[-1].headers["Authorization"],
    )
    cli(["scans", "--url", "http://flag:2", "--token", "flag-token"], api)
    assert ("flag", "Bearer flag-token") == (
        api.seen[-1].url.host,
        api.seen[-1].headers["Authorization"],
    )


def test_without_a_token_or_a_secret_at_hand_nothing_is_sent(
    cli: Callable[..., Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --token, no OPPSCAN_TOKEN, no secret: exit 1 saying what to pass; no secret
    is made (the server would refuse its tokens). With the data dir's secret, a token
    is signed with it."""
    monkeypatch.delenv("OPPSCAN_SECRET")
    secret_file = Settings.from_env().secret_file
    api = FakeApi()
    run = cli(["scans"], api)
    assert Exit.FAILED == run.code
    assert run.err.startswith("oppscan: no token: pass --token or set OPPSCAN_TOKEN")
    assert ([], False) == (api.seen, secret_file.exists())
    secret_file.parent.mkdir(parents=True)
    secret_file.write_text("data-dir-secret-0123456789abcdefghijkl")
    assert Exit.OK == cli(["scans", "--user", "ivy"], api).code
    signed = api.seen[-1].headers["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(signed, "data-dir-secret-0123456789abcdefghijkl", algorithms=["HS256"])
    assert "ivy" == claims["sub"]


# -- what is printed --------------------------------------------------------------------


def test_results_csv_has_every_opportunity_ranked(cli: Callable[..., Run]) -> None:
    """`results --csv`: a header, then one row per opportunity, best first, quoted as CSV."""
    run = cli(["results", SCAN_ID, "--csv"])
    assert Exit.OK == run.code
    rows = list(csv.DictReader(io.StringIO(run.out)))
    assert ["1", "2"] == [row["rank"] for row in rows]
    assert list(CSV_COLUMNS) == list(rows[0])
    assert {k: str(v) for k, v in BEST.items()} == {k: rows[0][k] for k in BEST}
    assert "0.1234567" == rows[1]["entry_price"]  # full precision for tools


def test_results_table_shows_the_top_opportunities(cli: Callable[..., Run]) -> None:
    """The table: symbol, strategy, side, score, entry, stop, target, expected return,
    the best `--top` of them, and what the scan covered."""
    run = cli(["results", SCAN_ID, "--top", "1"])
    assert Exit.OK == run.code
    assert "top 1 of 2 opportunities" in run.out
    header = run.out.splitlines()[2].split()
    assert ["symbol", "strategy", "side", "score", "entry", "stop", "target", "return"] == header
    row = run.out.splitlines()[4].split()
    assert ["BTC-USD", "momentum", "long", "0.91", "64000", "63000", "66000", "3.12%"] == row
    assert "DOGE-USD" not in run.out
    summary = f"{SCAN_ID} complete in 2.5 s 2 symbols · 1h · 2 of 2 strategies (2 ok)"
    assert summary in " ".join(run.out.split())


def test_a_followed_scan_ends_with_its_table(cli: Callable[..., Run]) -> None:
    """Without --json the progress goes to stderr and the table to stdout."""
    run = cli(["scan"], FakeApi(polls=2))
    assert Exit.OK == run.code
    assert "top 2 of 2 opportunities" in run.out
    assert f"oppscan: {SCAN_ID}: started" in run.err
    assert "2/2 strategies · 2 opportunities" in run.err  # rich's last frame, not a terminal


@pytest.mark.parametrize(
    ("discovered", "notice"),
    [
        ({}, "started"),
        ({"deduplicated": True}, "joined your identical scan, running already"),
        ({"cached": True}, "an identical scan finished already (--force-refresh runs it again)"),
    ],
)
def test_scan_says_whether_it_started_joined_or_reused_a_scan(
    cli: Callable[..., Run], discovered: dict[str, bool], notice: str
) -> None:
    """The first line on stderr tells a new scan from a joined or a reused one."""
    run = cli(["scan"], FakeApi(discovered=discovered))
    assert f"oppscan: {SCAN_ID}: {notice}" == run.err.splitlines()[0]


def test_status_json_is_the_services_document(cli: Callable[..., Run]) -> None:
    """`status --json` prints the status body as the service sent it."""
    run = cli(["status", SCAN_ID, "--json"], FakeApi(polls=5))
    assert Exit.OK == run.code
    assert status_body("scanning", 1, 1) == json.loads(run.out)


def test_status_names_the_strategies_in_each_state(cli: Callable[..., Run]) -> None:
    """`status` shows which strategies run and which ended how."""
    run = cli(["status", SCAN_ID], FakeApi(polls=5))
    assert Exit.OK == run.code
    lines = [" ".join(line.split()) for line in run.out.splitlines()]
    assert ["running rsi_reversal", "ok momentum"] == [
        line for line in lines if line.startswith(("running", "pending", "ok"))
    ]


def test_the_progress_line_names_what_runs_and_nothing_once_ended() -> None:
    """Up to three running strategies by name, then how many more."""
    running = status_body("scanning", 0)
    running["strategies"] = {name: "running" for name in "abcde"}
    console = Console(record=True, width=200)
    with ScanProgress.on(console) as progress:
        progress(ScanState.from_body(running, None))
    assert "running: a, b, c +2" in console.export_text()
    console = Console(record=True, width=200)
    with ScanProgress.on(console) as progress:
        progress(ScanState.from_body(status_body("complete", 2), None))
    assert "running" not in console.export_text()


def test_scans_lists_every_scan(cli: Callable[..., Run]) -> None:
    """`scans` is a table with whole scan ids; `--json` the service's document."""
    table = cli(["scans"])
    assert Exit.OK == table.code
    assert SCAN_ID in table.out
    assert "2/2" in table.out
    listed = cli(["scans", "--json"])
    assert {"scans": [status_body("complete", 2, 2)]} == json.loads(listed.out)


def test_cancel_says_the_scan_stops_at_its_next_boundary(cli: Callable[..., Run]) -> None:
    """A cancel accepted while the scan runs exits 0; a finished scan's 409 exits 1."""
    run = cli(["cancel", SCAN_ID])
    assert Exit.OK == run.code
    assert f"oppscan: {SCAN_ID} cancelling: it stops at its next strategy boundary\n" == run.err
    finished = FakeApi(errors={f"DELETE /scans/{SCAN_ID}": (409, "conflict")})
    assert Exit.FAILED == cli(["cancel", SCAN_ID], finished).code
