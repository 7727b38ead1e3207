"""The load test's pure parts: statistics, recommendation, report, scenario steps."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from oppscan.auth import TokenVerifier
from oppscan.loadtest import (
    Config,
    Criteria,
    Options,
    Plan,
    Recommendation,
    Sample,
    ScanCounts,
    Summary,
    add_arguments,
    comparison_table,
    median_runs,
    percentile,
    recommend,
    recommendation_text,
    report_document,
    run,
    summarize,
    symbols_for,
    worker_counts,
)
from oppscan.loadtest.chart import draw_chart
from oppscan.loadtest.client import Reply, Target
from oppscan.loadtest.command import run as run_command
from oppscan.loadtest.command import url_tokens
from oppscan.loadtest.recommend import p99_limit
from oppscan.loadtest.report import no_scan_failure, rate_limit_warning
from oppscan.loadtest.scenario import Board, Budget, Run, Scan, poll_once
from oppscan.loadtest.stats import scan_seconds
from oppscan.settings import Settings

SCAN_ID = "scan_0123456789abcdef0123456789abcdef"
SECRET = "loadtest-secret-0123456789abcdef0123456789"
URL = "http://127.0.0.1:8123"


def summary(workers: int, rps: float, p99: float, **figures: Any) -> Summary:
    """A clean configuration with the given throughput and p99."""
    base = Summary(
        label=f"{workers} workers",
        workers=workers,
        threads=4,
        duration_s=10.0,
        requests=int(rps * 10),
        requests_per_s=rps,
        p50_ms=p99 / 4,
        p95_ms=p99 / 2,
        p99_ms=p99,
        not_found=0,
        server_errors=0,
        unavailable=0,
        transport_errors=0,
        rate_limited=0,
        scans_started=10,
        scans_completed=9,
        scans_failed=0,
        median_scan_s=0.5,
        workers_seen=workers,
    )
    return replace(base, **figures)


# -- statistics ----------------------------------------------------------------


def test_percentile_interpolates_between_ranks() -> None:
    """The median of 1..4 lies halfway between 2 and 3."""
    assert 2.5 == percentile([4.0, 1.0, 3.0, 2.0], 50)


def test_percentile_of_a_hundred_values() -> None:
    """p99 of 1..100 is just under 100, p0 and p100 are the extremes."""
    values = [float(v) for v in range(1, 101)]
    assert (1.0, 99.01, 100.0) == (
        percentile(values, 0),
        round(percentile(values, 99), 2),
        percentile(values, 100),
    )


def test_percentile_of_nothing_is_zero() -> None:
    """No samples give 0.0 rather than an error or NaN (JSON has no NaN)."""
    assert 0.0 == percentile([], 99)


def test_scan_seconds_from_server_timestamps() -> None:
    """A finished scan's time is completed_at minus created_at."""
    body = {"created_at": "2025-01-01T00:00:00.250Z", "completed_at": "2025-01-01T00:00:01.000Z"}
    assert 0.75 == scan_seconds(body)


def test_scan_seconds_of_a_running_scan_is_none() -> None:
    """A scan without completed_at has no run time yet."""
    assert None is scan_seconds({"created_at": "2025-01-01T00:00:00.000Z", "completed_at": None})


def test_summarize_counts_each_kind_of_failure() -> None:
    """404, 429, 503, other 5xx and unanswered requests are counted apart; 429 is no failure."""
    statuses = [200, 202, 404, 429, 500, 502, 503, 503, 0]
    samples = [Sample(s, 0.01, "h:1") for s in statuses]
    result = summarize(Config("x", 2, 4), samples, 3.0, ScanCounts())
    assert (9, 3.0, 1, 2, 2, 1, 1) == (
        result.requests,
        result.requests_per_s,
        result.not_found,
        result.server_errors,
        result.unavailable,
        result.transport_errors,
        result.rate_limited,
    )
    assert 6 == result.failures


def test_summarize_latency_leaves_out_unanswered_requests() -> None:
    """A request that got no answer (status 0) does not count in the percentiles."""
    samples = [Sample(200, 0.010), Sample(200, 0.020), Sample(0, 10.0)]
    result = summarize(Config("x"), samples, 1.0, ScanCounts())
    assert (15.0, 19.9) == (result.p50_ms, result.p99_ms)


def test_summarize_scans_and_workers() -> None:
    """Scans come from their counts, workers from the distinct X-Served-By values."""
    samples = [Sample(200, 0.01, w) for w in ("a:1", "b:2", "a:1", None)]
    scans = ScanCounts(started=5, completed=3, failed=1, seconds=(0.4, 0.1, 0.9))
    result = summarize(Config("x", 2, 4), samples, 2.0, scans, client_cpu_s=0.5)
    assert (5, 3, 1, 0.4, 2, 25.0) == (
        result.scans_started,
        result.scans_completed,
        result.scans_failed,
        result.median_scan_s,
        result.workers_seen,
        result.client_cpu_percent,
    )


def test_median_runs_keeps_each_configurations_middle_run() -> None:
    """Of three runs the middle throughput is kept, of two the lower, in first-seen order."""
    runs = [
        summary(1, 500, 10),
        summary(2, 900, 10),
        summary(1, 700, 10),
        summary(2, 800, 10),
        summary(1, 600, 10),
    ]
    assert [(1, 600), (2, 800)] == [(s.workers, s.requests_per_s) for s in median_runs(runs)]


# -- recommendation ------------------------------------------------------------


def test_recommends_fewest_workers_near_the_best() -> None:
    """2 workers are within 10% of 4 workers' throughput with a similar p99: 2 it is."""
    figures = [summary(1, 500, 20), summary(2, 950, 22), summary(4, 1000, 21)]
    assert 2 == recommend(figures).workers


def test_recommendation_skips_a_configuration_with_errors() -> None:
    """A configuration that answered 5xx is never chosen while a clean one exists."""
    figures = [summary(1, 1000, 20, server_errors=1), summary(2, 990, 20), summary(4, 700, 20)]
    assert 2 == recommend(figures).workers


def test_recommendation_counts_503_and_404_as_failures() -> None:
    """503 and 404 disqualify just as 500 does."""
    figures = [summary(1, 1000, 20, unavailable=3), summary(2, 990, 20, not_found=1)]
    figures.append(summary(4, 950, 20))
    assert 4 == recommend(figures).workers


def test_recommendation_skips_a_slow_p99() -> None:
    """Near-best throughput with a p99 far above the lowest is passed over."""
    figures = [summary(1, 980, 200), summary(2, 1000, 33), summary(4, 990, 30)]
    assert 2 == recommend(figures).workers


def test_p99_limit_is_a_ratio_or_a_slack_whichever_is_looser() -> None:
    """Low p99s get the absolute slack, high ones the ratio."""
    criteria = Criteria(p99_ratio=1.25, p99_slack_ms=5.0)
    assert (9.0, 125.0) == (
        p99_limit([summary(1, 1, 4), summary(2, 1, 9)], criteria),
        p99_limit([summary(1, 1, 100)], criteria),
    )


def test_when_every_configuration_failed_the_fewest_failures_win() -> None:
    """With no clean configuration the one with the fewest failures is named, with a warning."""
    figures = [summary(1, 900, 20, not_found=5), summary(2, 1000, 20, server_errors=2)]
    recommendation = recommend(figures)
    assert 2 == recommendation.workers
    assert "investigate" in recommendation.reason


def test_no_recommendation_without_worker_counts() -> None:
    """A service given by URL has no worker count, so nothing is recommended."""
    assert None is recommend([replace(summary(1, 100, 10), workers=None)]).workers


def test_reason_names_the_figures() -> None:
    """The reason gives the chosen and the best throughput and the p99 limit."""
    reason = recommend([summary(1, 950, 20), summary(2, 1000, 20)]).reason
    assert "1 worker: the fewest workers within 10% of the best throughput" in reason
    assert "950 vs 1000 req/s at 2 workers" in reason
    assert "limit of 25.0 ms" in reason


# -- report ----------------------------------------------------------------------


def test_report_document_is_json_with_every_configuration() -> None:
    """The JSON report holds the scenario, each configuration and the recommendation."""
    figures = [summary(1, 500, 20), summary(2, 950, 22)]
    document = report_document({"users": 4}, figures, Recommendation(2, "because"))
    loaded = json.loads(json.dumps(document))
    assert [1, 2] == [c["workers"] for c in loaded["configurations"]]
    assert {"workers": 2, "reason": "because"} == loaded["recommendation"]
    assert {"users": 4} == loaded["scenario"]
    assert "runs" not in loaded


def test_report_document_lists_every_run_when_repeated() -> None:
    """With repeated runs the document keeps each one beside the medians."""
    runs = [summary(1, 500, 20), summary(1, 600, 20)]
    document = report_document({}, median_runs(runs), Recommendation(1, "-"), runs)
    assert [500, 600] == [r["requests_per_s"] for r in document["runs"]]


def test_comparison_table_has_a_column_per_configuration() -> None:
    """Each configuration is a column; each figure a row."""
    console = Console(record=True, width=80)
    console.print(comparison_table([summary(1, 500, 20), summary(4, 950, 22)]))
    text = console.export_text()
    assert 2 == sum(label in text for label in ("1 x 4", "4 x 4"))
    assert "950.0" in text
    assert "p99 ms" in text


def test_recommendation_text() -> None:
    """The printed recommendation starts with what to do."""
    assert "Recommended: 2 workers: fast" == recommendation_text(
        Recommendation(2, "2 workers: fast")
    )
    assert "No recommendation: why" == recommendation_text(Recommendation(None, "why"))


def test_chart_is_a_png(tmp_path: Path) -> None:
    """The chart is written as a PNG file."""
    path = tmp_path / "chart.png"
    draw_chart([summary(1, 500, 20), summary(2, 950, 22)], path)
    assert b"\x89PNG\r\n\x1a\n" == path.read_bytes()[:8]


# -- options -------------------------------------------------------------------------


def test_worker_counts_parses_a_comma_list() -> None:
    """`1,2, 4` gives (1, 2, 4)."""
    assert (1, 2, 4) == worker_counts("1,2, 4")


@pytest.mark.parametrize("text", ["", "0", "1,x", "2,2", "-1"])
def test_worker_counts_refuses_bad_lists(text: str) -> None:
    """Empty, non-positive, non-numeric and repeated counts are refused."""
    with pytest.raises(ValueError, match="--workers"):
        worker_counts(text)


def test_options_from_flags() -> None:
    """The flags become a plan and the configurations to run."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--workers", "1,2", "--duration", "4", "--think-ms", "50"])
    options = Options.from_args(args)
    assert ((1, 2), 4.0, 0.05, None) == (
        options.workers,
        options.plan.duration_s,
        options.plan.think_s,
        options.url,
    )


def test_a_remote_url_is_refused_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --allow-remote a non-loopback URL ends the run with status 1, said on stderr."""
    options = Options(Plan(1.0, 1, 1), url="http://192.0.2.1:8000", token="t")
    assert 1 == run(options)
    out, err = capsys.readouterr()
    assert ("", True) == (out, "not on this machine's loopback" in err)


def test_target_parse_and_loopback() -> None:
    """Loopback addresses and localhost are local; a documentation address is not."""
    target = Target.parse("http://127.0.0.1:8123/base/")
    assert ("127.0.0.1", 8123, "/base") == (target.host, target.port, target.base_path)
    assert target.is_loopback()
    assert Target.parse("http://localhost:1").is_loopback()
    assert Target.parse("http://[::1]:1").is_loopback()
    assert not Target.parse("http://192.0.2.1:1").is_loopback()


# -- scenario steps --------------------------------------------------------------------


def test_symbols_differ_between_users_and_rounds() -> None:
    """Each user's window and each next round's window is a different symbol set."""
    universe = [f"S{i}" for i in range(60)]
    windows = {tuple(symbols_for(universe, u, r, 8)) for u in range(4) for r in range(3)}
    assert 12 == len(windows)
    assert 8 == len(symbols_for(universe, 3, 1000, 8))


def test_symbols_are_capped_by_the_universe() -> None:
    """Asking for more symbols than exist gives each one once."""
    assert ["a", "b", "c"] == sorted(symbols_for(["a", "b", "c"], 0, 0, 10))


def test_budget_caps_the_request_count() -> None:
    """No more than `limit` requests are granted."""
    budget = Budget(limit=3, deadline=time.monotonic() + 60)
    assert [True, True, True, False] == [budget.take() for _ in range(4)]


def test_budget_ends_at_the_deadline() -> None:
    """Nothing is granted once the deadline has passed."""
    budget = Budget(limit=100, deadline=time.monotonic() - 1)
    assert (False, True) == (budget.take(), budget.spent())


def test_board_takes_scans_in_turn_and_finishes_once() -> None:
    """Pollers cycle through the scans; only the first finisher removes one."""
    board = Board()
    first, second = Scan("a", "t"), Scan("b", "t")
    board.add(first)
    board.add(second)
    assert [second, first] == [board.pick(), board.pick()]
    assert (True, False) == (board.finish(first), board.finish(first))
    assert second is board.pick()


@dataclass
class FakeHttp:
    """Answers each path from a queue of replies and remembers what was asked."""

    replies: dict[str, list[Reply]]
    asked: list[str] = field(default_factory=list)
    timeout_s: float = 1.0

    def get(self, path: str, token: str | None = None) -> Reply:
        self.asked.append(path)
        return self.replies[path.rsplit("/", 2)[1]].pop(0)

    def post_json(self, path: str, token: str, body: Any) -> Reply:
        raise AssertionError("not used")


def status_reply(status: str, completed_at: str | None = None) -> Reply:
    body: dict[str, Any] = {
        "status": status,
        "created_at": "2025-01-01T00:00:00.000Z",
        "completed_at": completed_at,
        "progress": {},
    }
    return Reply(200, json.dumps(body).encode(), 0.001, "h:1")


def a_run(http: FakeHttp) -> Run:
    return Run(http, Plan(10.0, 1, 1), Budget(100, time.monotonic() + 60))


def test_a_finished_scan_is_collected_once_its_results_answer() -> None:
    """Complete status, then results 200: the scan is done, timed and off the board."""
    http = FakeHttp(
        {
            "status": [status_reply("complete", "2025-01-01T00:00:02.000Z")],
            "results": [Reply(200, b"{}", 0.001, "h:2")],
        }
    )
    run = a_run(http)
    scan = Scan(SCAN_ID, "t")
    run.board.add(scan)
    assert poll_once(run, scan, read_results=False)
    assert (True, None) == (scan.done.is_set(), run.board.pick())
    assert ScanCounts(0, 1, 0, (2.0,)) == run.tally.counts()
    assert 2 == len(run.tally.recorded())


def test_a_finished_scan_stays_followed_while_results_are_not_200() -> None:
    """If results do not answer 200 after `complete`, the scan is polled again."""
    http = FakeHttp(
        {
            "status": [status_reply("complete", "2025-01-01T00:00:02.000Z")],
            "results": [Reply(202, b"{}", 0.001, "h:2")],
        }
    )
    run = a_run(http)
    scan = Scan(SCAN_ID, "t")
    run.board.add(scan)
    poll_once(run, scan, read_results=False)
    assert (False, scan) == (scan.done.is_set(), run.board.pick())


def test_a_running_scan_reads_results_only_when_asked() -> None:
    """A running scan's status poll reads results only on the poller's n-th poll."""
    http = FakeHttp(
        {
            "status": [status_reply("scanning"), status_reply("scanning")],
            "results": [Reply(202, b"{}", 0.001)],
        }
    )
    run = a_run(http)
    scan = Scan(SCAN_ID, "t")
    poll_once(run, scan, read_results=False)
    poll_once(run, scan, read_results=True)
    assert ["status", "status", "results"] == [p.rsplit("/", 2)[1] for p in http.asked]


def test_polling_stops_when_the_budget_is_spent() -> None:
    """With no request left, a poll sends nothing and says so."""
    http = FakeHttp({})
    run = Run(http, Plan(10.0, 1, 1), Budget(0, time.monotonic() + 60))
    assert not poll_once(run, Scan(SCAN_ID, "t"), read_results=False)
    assert [] == http.asked


def test_error_code_of_an_answer() -> None:
    """Failed answers are named by status and `error`; success has none."""
    assert ("503 worker_busy", "404", "no_answer", None) == (
        Reply(503, b'{"error": "worker_busy", "detail": "x"}', 0.1).error_code(),
        Reply(404, b"not json", 0.1).error_code(),
        Reply(0, b"", 0.1).error_code(),
        Reply(202, b"{}", 0.1).error_code(),
    )


def test_errors_are_counted_by_code_and_shown() -> None:
    """Error codes are tallied most frequent first and printed under the figures."""
    errors = ["503 store_unavailable", "503 worker_busy", "503 worker_busy", None]
    samples = [Sample(503 if e else 200, 0.01, "h:1", e) for e in errors]
    result = summarize(Config("x", 1, 4), samples, 1.0, ScanCounts())
    assert (("503 worker_busy", 2), ("503 store_unavailable", 1)) == result.error_codes
    console = Console(record=True, width=120)
    console.print(comparison_table([result]))
    assert "503 worker_busy: 2" in console.export_text()
    document = report_document({}, [result], Recommendation(None, "-"))
    assert {"503 worker_busy": 2, "503 store_unavailable": 1} == document["configurations"][0][
        "error_codes"
    ]


def test_when_no_fast_configuration_has_a_low_p99_the_lowest_p99_among_them_wins() -> None:
    """If every near-best configuration has a high p99, the lowest of those p99s decides."""
    figures = [summary(1, 500, 10), summary(2, 1000, 90), summary(4, 950, 80)]
    recommendation = recommend(figures)
    assert 4 == recommendation.workers
    assert "none of them kept p99 under 15.0 ms" in recommendation.reason


# -- tokens for --url, and the verdict on a run -----------------------------------------


def test_url_tokens_are_one_per_user_signed_with_the_configured_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With OPPSCAN_SECRET set and no --token, each simulated user gets a token of its own."""
    monkeypatch.setenv("OPPSCAN_SECRET", SECRET)
    tokens = url_tokens(Options(Plan(1.0, 3, 1), url=URL))
    users = [TokenVerifier.hmac([SECRET]).user_of(t) for t in tokens]
    assert ["loadtest-0", "loadtest-1", "loadtest-2"] == users


def test_url_tokens_use_the_data_dirs_secret_the_server_verifies_with() -> None:
    """Without OPPSCAN_SECRET the data dir's secret (the server's, same user) signs them."""
    server = TokenVerifier.from_settings(Settings.from_env())  # creates the data dir's secret
    tokens = url_tokens(Options(Plan(1.0, 2, 1), url=URL))
    assert ["loadtest-0", "loadtest-1"] == [server.user_of(t) for t in tokens]


def test_without_a_secret_or_a_token_the_load_test_says_so_and_creates_no_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No secret at hand and no --token: status 1 and why, and no new secret in the data
    dir (its tokens would be refused by a server that has another)."""
    assert 1 == run(Options(Plan(1.0, 1, 1), url=URL))
    assert "no token: pass --token, or set OPPSCAN_SECRET" in capsys.readouterr().err
    assert None is Settings.from_env().available_secret()


def test_a_given_token_is_used_for_every_user_even_with_a_secret_at_hand(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--token wins: it may be for a server whose secret is not the local one."""
    monkeypatch.setenv("OPPSCAN_SECRET", SECRET)
    assert ["given"] == url_tokens(Options(Plan(1.0, 4, 1), url=URL, token="given"))


def test_mostly_rate_limited_is_more_than_half_of_discover_requests() -> None:
    """429 on more than half of the discover requests; a run with none is not."""
    assert (False, True, False) == (
        summary(1, 10, 10, rate_limited=5, discovers=10).mostly_rate_limited,
        summary(1, 10, 10, rate_limited=6, discovers=10).mostly_rate_limited,
        summary(1, 10, 10, rate_limited=0, discovers=0).mostly_rate_limited,
    )


def test_rate_limit_warning_names_the_cause() -> None:
    """A shared --token is named as the cause; with a token per user, the server's limits."""
    limited = summary(1, 10, 10, rate_limited=8, discovers=10)
    assert None is rate_limit_warning(summary(1, 10, 10, discovers=10), shared_token=True)
    shared = str(rate_limit_warning(limited, shared_token=True))
    own = str(rate_limit_warning(limited, shared_token=False))
    share = "1 workers: 8 of 10 discover requests were answered 429; "
    assert (True, True) == (shared.startswith(share), own.startswith(share))
    assert (True, False) == ("the one --token" in shared, "the one --token" in own)
    assert "OPPSCAN_DISCOVER_RATE_PER_MINUTE" in own


def test_no_scan_failure_names_the_most_frequent_error() -> None:
    """A run with no completed scan is a failure that says what was answered most."""
    idle = summary(1, 10, 10, scans_completed=0, error_codes=(("401 unauthorized", 7),))
    assert None is no_scan_failure(summary(1, 10, 10))
    assert (
        "1 workers: no scan completed in 10.0 s; most frequent error: 401 unauthorized (7 times)"
        == no_scan_failure(idle)
    )


@dataclass
class ScriptedService:
    """A service on the loadtest's Http protocol: discover answers `discover_status`
    (429 with a short Retry-After, or 202), and every scan is complete at once."""

    discover_status: int
    timeout_s: float = 1.0
    tokens: set[str] = field(default_factory=set)

    def get(self, path: str, token: str | None = None) -> Reply:
        if path.endswith("/symbols"):
            return Reply(200, b'{"symbols": ["A", "B", "C", "D"]}', 0.001, "h:1")
        if "/status/" in path:
            return status_reply("complete", "2025-01-01T00:00:01.000Z")
        return Reply(200, b"{}", 0.001, "h:1")

    def post_json(self, path: str, token: str, body: Any) -> Reply:
        self.tokens.add(token)
        if self.discover_status == 202:
            return Reply(202, json.dumps({"scan_id": SCAN_ID}).encode(), 0.001, "h:1")
        limited = b'{"error": "rate_limited", "detail": "slow down"}'
        return Reply(429, limited, 0.001, "h:1", retry_after=0.01)


SHORT = Plan(duration_s=0.3, users=2, pollers=2, max_requests=400)


def test_a_shared_token_held_back_by_429s_warns_and_fails_when_no_scan_completed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Against --url with one --token, 429 to every discover: the figures on stdout, a
    warning naming the shared token and the failure on stderr, exit status 1."""
    service = ScriptedService(429)
    options = Options(SHORT, url=URL, token="shared")
    assert 1 == run_command(options, http=lambda target: service)
    out, err = capsys.readouterr()
    assert {"shared"} == service.tokens
    assert (True, False, False) == ("scans completed" in out, "warning" in out, "failed" in out)
    warning, failure = err.splitlines()
    assert (True, True) == (warning.startswith("warning: "), "the one --token" in warning)
    assert "loadtest failed: http://127.0.0.1:8123: no scan completed in" in failure


def test_per_user_tokens_and_completed_scans_exit_zero_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the secret at hand each user sends its own token; scans complete; status 0
    and nothing on stderr."""
    monkeypatch.setenv("OPPSCAN_SECRET", SECRET)
    service = ScriptedService(202)
    assert 0 == run_command(Options(SHORT, url=URL), http=lambda target: service)
    out, err = capsys.readouterr()
    assert (2, "", True) == (len(service.tokens), err, "scans completed" in out)
