"""`oppscan loadtest`: measure each configuration, print and write the report, recommend."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import secrets
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from oppscan.auth import settings_token
from oppscan.loadtest.chart import chartable, draw_chart
from oppscan.loadtest.client import Http, HttpClient, Target
from oppscan.loadtest.options import Options
from oppscan.loadtest.recommend import recommend
from oppscan.loadtest.report import (
    comparison_table,
    configuration_label,
    configuration_table,
    no_scan_failure,
    rate_limit_warning,
    recommendation_text,
    report_document,
)
from oppscan.loadtest.scenario import API, Plan, run_load
from oppscan.loadtest.servers import ServiceConfig, flush_store, oppscan_service, wait_for_workers
from oppscan.loadtest.stats import Config, Summary, median_runs, summarize
from oppscan.processes import free_port
from oppscan.settings import Settings
from oppscan.storage import EmbeddedRedis

CONNECTIONS = "a new connection per request (spreads requests over workers)"
HttpFactory = Callable[[Target], Http]


class LoadTestError(Exception):
    """The load test cannot run as asked."""


def run(
    options: Options,
    console: Console | None = None,
    errors: Console | None = None,
    http: HttpFactory = HttpClient,
) -> int:
    """Run every configuration, then print, write and chart the report; the exit status.

    The report goes to `console` (stdout), warnings and failures to `errors` (stderr).
    Against `--url`, a run in which no scan completed fails (status 1).
    """
    console = console or Console()
    errors = errors or Console(stderr=True)
    if options.chart is not None and importlib.util.find_spec("matplotlib") is None:
        errors.print("[bold red]loadtest failed:[/] --chart needs matplotlib", soft_wrap=True)
        return 1
    try:
        runs = measure(options, console, http)
    except (LoadTestError, RuntimeError) as exc:
        errors.print(f"[bold red]loadtest failed:[/] {exc}", soft_wrap=True)
        return 1
    _report(options, runs, console)
    return _verdict(options, runs, errors)


def _verdict(options: Options, runs: Sequence[Summary], errors: Console) -> int:
    """Warn of runs the rate limits held back; fail when a run against --url completed
    no scan."""
    shared = shares_token(options)
    for warning in filter(None, (rate_limit_warning(s, shared) for s in runs)):
        errors.print(f"[bold yellow]warning:[/] {warning}", soft_wrap=True)
    failures = [f for f in map(no_scan_failure, runs) if f] if options.url else []
    for failure in failures:
        errors.print(f"[bold red]loadtest failed:[/] {failure}", soft_wrap=True)
    return 1 if failures else 0


def _report(options: Options, runs: Sequence[Summary], console: Console) -> None:
    summaries = median_runs(runs)
    recommendation = recommend(summaries)
    if len(runs) > 1:
        title = "workers x threads" + (" (median runs)" if options.repeat > 1 else "")
        console.print(comparison_table(summaries, title))
    console.print(recommendation_text(recommendation))
    if options.out is not None:
        every_run = runs if options.repeat > 1 else ()
        document = report_document(scenario(options), summaries, recommendation, every_run)
        options.out.write_text(json.dumps(document, indent=2) + "\n")
    if options.chart is not None:
        _chart(summaries, options.chart, console)


def measure(options: Options, console: Console, http: HttpFactory = HttpClient) -> list[Summary]:
    """Every run of every configuration, in the order run."""
    if options.url is not None:
        url = options.url
        return [
            _measure_url(options, url, _note(options, r), console, http) for r in _rounds(options)
        ]
    return _measure_started(options, console)


def scenario(options: Options) -> dict[str, Any]:
    """What was run, for the JSON report."""
    plan = options.plan
    return {
        "target": options.url or "servers started by the load test",
        "workers": None if options.url else list(options.workers),
        "threads": None if options.url else options.threads,
        "latency_ms": None if options.url else options.latency_ms,
        "duration_s": plan.duration_s,
        "users": plan.users,
        "pollers": plan.pollers,
        "symbols_per_scan": plan.symbols_per_scan,
        "think_ms": plan.think_s * 1000.0,
        "max_requests": plan.max_requests,
        "repeat": options.repeat,
        "connections": CONNECTIONS,
        "tokens": "the --token, for every user" if shares_token(options) else "one per user",
    }


def shares_token(options: Options) -> bool:
    """True when every simulated user sends the one `--token` (so one user's limits)."""
    return bool(options.url and options.token)


def user_tokens(secret: str, users: int, ttl_s: int) -> list[str]:
    """One token per synthetic user, `loadtest-0` and on, with the configured audience and
    issuer (servers started here inherit this environment)."""
    settings = Settings.from_env()
    return [settings_token(settings, f"loadtest-{i}", ttl_s, secret) for i in range(users)]


def url_tokens(options: Options) -> list[str]:
    """Tokens for `--url`: the `--token` given, for every user; else one per user signed
    with the secret at hand (`OPPSCAN_SECRET`, or the data dir's, which is the server's
    when the same user runs it). Never a new secret: the server would refuse its tokens."""
    if options.token:
        return [options.token]
    secret = Settings.from_env().available_secret()
    if secret is None:
        raise LoadTestError(
            "no token: pass --token, or set OPPSCAN_SECRET (or OPPSCAN_DATA_DIR) to the "
            "server's, to sign one per user"
        )
    return user_tokens(secret, options.plan.users, _ttl(options.plan))


def _measure_url(
    options: Options, url: str, note: str, console: Console, http: HttpFactory
) -> Summary:
    target = Target.parse(url)
    if not options.allow_remote and not target.is_loopback():
        raise LoadTestError(
            f"{target.host} is not on this machine's loopback; "
            "pass --allow-remote to load a remote service"
        )
    tokens = url_tokens(options)
    return _measure_one(http(target), tokens, Config(target.url), options.plan, note, console)


def _measure_started(options: Options, console: Console) -> list[Summary]:
    secret = secrets.token_urlsafe(32)
    with _workspace(options.log_dir) as directory:
        store = EmbeddedRedis(directory / "redis", port=free_port()).start()
        try:
            return [
                _measure_workers(
                    options,
                    ServiceConfig(count, options.threads, options.latency_ms, secret, store.url),
                    directory,
                    _note(options, round_),
                    console,
                )
                for round_ in _rounds(options)
                for count in options.workers
            ]
        finally:
            store.stop()


@contextlib.contextmanager
def _workspace(kept: Path | None) -> Iterator[Path]:
    """Where the started servers keep logs and data: `kept`, or a directory removed after."""
    if kept is not None:
        kept.mkdir(parents=True, exist_ok=True)
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix="oppscan-loadtest-") as tmp:
        yield Path(tmp)


def _measure_workers(
    options: Options, config: ServiceConfig, directory: Path, note: str, console: Console
) -> Summary:
    flush_store(config.redis_url)
    service = oppscan_service(config, directory)
    service.start()
    try:
        client = HttpClient(Target.parse(service.url))
        answered = wait_for_workers(client, config.workers)
        if answered < config.workers:
            console.print(f"Only {answered} of {config.workers} workers answered before the run.")
        tokens = user_tokens(config.secret, options.plan.users, _ttl(options.plan))
        label = configuration_label(config.workers, config.threads)
        summary_config = Config(label, config.workers, config.threads)
        return _measure_one(client, tokens, summary_config, options.plan, note, console)
    finally:
        service.stop()


def _measure_one(
    client: Http,
    tokens: Sequence[str],
    config: Config,
    plan: Plan,
    note: str,
    console: Console,
) -> Summary:
    universe = _symbols(client, tokens[0])
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[requests]} requests, {task.fields[scans]} scans done"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(config.label + note, total=plan.duration_s, requests=0, scans=0)
        outcome = run_load(
            client,
            tokens,
            universe,
            plan,
            on_tick=lambda p: progress.update(
                task, completed=p.elapsed_s, requests=p.requests, scans=p.scans_completed
            ),
        )
    summary = summarize(
        config, outcome.samples, outcome.elapsed_s, outcome.scans, outcome.client_cpu_s
    )
    console.print(configuration_table(summary, note))
    return summary


def _rounds(options: Options) -> range:
    return range(1, options.repeat + 1)


def _note(options: Options, round_: int) -> str:
    return f" (run {round_} of {options.repeat})" if options.repeat > 1 else ""


def _symbols(client: Http, token: str) -> list[str]:
    reply = client.get(f"{API}/symbols", token)
    if reply.status != 200:
        raise LoadTestError(f"GET {API}/symbols answered {reply.status or 'nothing'}")
    symbols = reply.json().get("symbols")
    if not isinstance(symbols, list) or not symbols:
        raise LoadTestError(f"GET {API}/symbols listed no symbols")
    return [str(s) for s in symbols]


def _ttl(plan: Plan) -> int:
    return int(plan.duration_s) + 3600


def _chart(summaries: Sequence[Summary], path: Path, console: Console) -> None:
    if not chartable(summaries):
        console.print("No chart: no configuration with a known worker count.")
        return
    draw_chart(summaries, path)
    console.print(f"Chart written to {path}")
