"""The report: rich tables for people, a JSON document for tools. Pure: builds, never prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from rich.table import Table

from oppscan.loadtest.recommend import Recommendation
from oppscan.loadtest.stats import Summary

# (heading, attribute, format) of every figure the tables show, in order.
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("requests", "requests", "{}"),
    ("requests/s", "requests_per_s", "{:.1f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p95 ms", "p95_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("404", "not_found", "{}"),
    ("5xx (not 503)", "server_errors", "{}"),
    ("503", "unavailable", "{}"),
    ("no answer", "transport_errors", "{}"),
    ("429 (rate limited)", "rate_limited", "{}"),
    ("scans completed", "scans_completed", "{}"),
    ("median scan s", "median_scan_s", "{:.2f}"),
    ("workers seen", "workers_seen", "{}"),
    ("client CPU % of a core", "client_cpu_percent", "{:.0f}"),
)


def figure(summary: Summary, attribute: str, fmt: str) -> str:
    return fmt.format(getattr(summary, attribute))


def configuration_table(summary: Summary, note: str = "") -> Table:
    """One configuration's figures, one per row."""
    return comparison_table([summary], title=summary.label + note)


def comparison_table(summaries: Sequence[Summary], title: str = "workers x threads") -> Table:
    """Configurations side by side, one column each, so that several fit in 80 columns."""
    table = Table(title=title)
    table.add_column("figure")
    for summary in summaries:
        table.add_column(_short_label(summary), justify="right")
    table.add_row("seconds", *(f"{s.duration_s:.1f}" for s in summaries))
    for heading, attribute, fmt in FIGURES:
        table.add_row(heading, *(figure(s, attribute, fmt) for s in summaries))
    if any(s.error_codes for s in summaries):
        table.add_row("errors", *(errors_text(s) for s in summaries))
    return table


def errors_text(summary: Summary) -> str:
    """`503 worker_busy: 6, 404 not_found: 1`, or `-`."""
    return "\n".join(f"{code}: {count}" for code, count in summary.error_codes) or "-"


def configuration_label(workers: int, threads: int) -> str:
    return f"{workers} worker{'' if workers == 1 else 's'} x {threads} threads"


def _short_label(summary: Summary) -> str:
    if summary.workers is None:
        return summary.label
    return f"{summary.workers} x {summary.threads}"


def recommendation_text(recommendation: Recommendation) -> str:
    if recommendation.workers is None:
        return f"No recommendation: {recommendation.reason}"
    return f"Recommended: {recommendation.reason}"


def rate_limit_warning(summary: Summary, shared_token: bool) -> str | None:
    """When most discover requests were answered 429: why, and what to do about it."""
    if not summary.mostly_rate_limited:
        return None
    share = (
        f"{summary.label}: {summary.rate_limited} of {summary.discovers} "
        "discover requests were answered 429"
    )
    if shared_token:
        return (
            f"{share}; every simulated user sends the one --token, so they share one user's "
            "limits: leave --token out where the server's secret is at hand (OPPSCAN_SECRET, "
            "or the data dir of the user running the server) to sign a token per user"
        )
    return (
        f"{share}; the server's per-user limits (OPPSCAN_DISCOVER_RATE_PER_MINUTE, "
        "OPPSCAN_MAX_ACTIVE_SCANS_PER_USER) set the pace, not its capacity"
    )


def no_scan_failure(summary: Summary) -> str | None:
    """When a run completed no scan (its figures measure nothing a client wants): which
    run, and the error answered most."""
    if summary.scans_completed > 0:
        return None
    text = f"{summary.label}: no scan completed in {summary.duration_s:.1f} s"
    if summary.error_codes:
        code, count = summary.error_codes[0]
        text += f"; most frequent error: {code} ({count} times)"
    return text


def report_document(
    scenario: Mapping[str, Any],
    summaries: Sequence[Summary],
    recommendation: Recommendation,
    runs: Sequence[Summary] = (),
) -> dict[str, Any]:
    """The JSON form of the report; `runs`, when given, lists every run behind the figures."""
    document = {
        "scenario": dict(scenario),
        "configurations": [_figures(s) for s in summaries],
        "recommendation": asdict(recommendation),
    }
    if runs:
        document["runs"] = [_figures(s) for s in runs]
    return document


def _figures(summary: Summary) -> dict[str, Any]:
    return {**asdict(summary), "error_codes": dict(summary.error_codes)}
