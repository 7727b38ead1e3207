"""What the client commands show: rich tables and a progress bar for people, CSV and
JSON for tools. Builds; `scan_cli` prints."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
)
from rich.table import Table
from rich.text import Text

from oppscan.client import Results, ScanState

# An opportunity's fields (the API's `Opportunity`) after its rank: the CSV columns.
CSV_COLUMNS = (
    "rank",
    "symbol",
    "strategy",
    "side",
    "score",
    "entry_price",
    "stop_loss",
    "take_profit",
    "expected_return",
    "risk_reward",
    "timeframe",
    "signal",
    "as_of",
)
SIDE_STYLES = {"long": "green", "short": "red"}
SCAN_ID_WIDTH = len("scan_") + 32


def json_text(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def opportunities_csv(results: Results) -> str:
    """Every opportunity of the results, ranked, one row each under a header."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for rank, found in enumerate(results.opportunities, 1):
        writer.writerow({"rank": rank, **found})
    return out.getvalue()


def opportunities_table(results: Results, top: int) -> Table:
    """The best `top` opportunities, best first (so far, while the scan runs); what
    the scan covered underneath."""
    shown = results.opportunities[:top]
    total = results.body.get("metadata", {}).get("opportunities_total", len(shown))
    title = f"top {len(shown)} of {total} opportunities" if shown else "no opportunities"
    title += " so far" if results.partial else ""
    table = _table(title, caption=scan_summary(results))
    for heading in ("symbol", "strategy", "side"):
        table.add_column(heading)
    for heading in ("score", "entry", "stop", "target", "expected\nreturn"):
        table.add_column(heading, justify="right")
    for found in shown:
        table.add_row(*_opportunity_cells(found))
    return table


def scan_summary(results: Results) -> str:
    """`scan_… complete in 2.4 s` over `3 symbols · 1h · 14 of 14 strategies (12 ok, 2 skipped)`;
    `scan_… scanning` over `3 of 14 strategies so far` while it runs."""
    body = results.body
    if results.partial:
        progress = body["progress"]
        return (
            f"{body['scan_id']} {results.status}\n{progress['strategies_completed']} of "
            f"{progress['total_strategies']} strategies so far"
        )
    meta = body["metadata"]
    outcomes = Counter(p["status"] for p in body["strategy_performance"].values())
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcomes.items()))
    return (
        f"{body['scan_id']} {results.status} in {meta['duration_ms'] / 1000:.1f} s\n"
        f"{meta['symbols_scanned']} symbols · {meta['timeframe']} · "
        f"{meta['strategies_completed']} of {meta['total_strategies']} strategies "
        f"({counts or 'none run'})"
    )


def status_table(state: ScanState) -> Table:
    """One scan's status, a field a row."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("scan", state.scan_id)
    table.add_row("status", state.status)
    table.add_row("strategies", f"{state.completed}/{state.total}")
    for name in STATE_ORDER:
        if found := state.in_state(name):
            table.add_row(f"  {name}", ", ".join(found))
    table.add_row("opportunities", str(state.found))
    table.add_row("created", state.created_at)
    table.add_row("completed" if state.completed_at else "updated", _last_change(state))
    if state.error:
        table.add_row("error", state.error)
    return table


def scans_table(states: Sequence[ScanState]) -> Table:
    """The caller's scans, newest first, a scan a row (times are local)."""
    table = _table(f"{len(states)} scans")
    table.add_column("scan", no_wrap=True, min_width=SCAN_ID_WIDTH)  # to copy whole
    table.add_column("status")
    table.add_column("strategies", justify="right")
    table.add_column("found", justify="right")
    table.add_column("created")
    for state in states:
        table.add_row(
            state.scan_id,
            state.status,
            f"{state.completed}/{state.total}",
            str(state.found),
            _clock(state.created_at),
        )
    return table


STATE_ORDER = ("running", "pending", "ok", "skipped", "error", "cancelled")
RUNNING_SHOWN = 3  # names of running strategies the progress line has room for


class ScanProgress:
    """A progress bar following one scan: its status, strategies done of total,
    opportunities so far, how long the scan has run (by its `created_at`), and
    which strategies run now.

    Call it with each new state (it is `Scan.wait`'s `on_progress`).
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._task: TaskID | None = None

    @classmethod
    def on(cls, console: Console) -> ScanProgress:
        return cls(
            Progress(
                TextColumn("{task.description:<9}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("strategies · {task.fields[found]} opportunities ·"),
                ScanElapsedColumn(),
                TextColumn("{task.fields[running]}", style="dim"),
                console=console,
            )
        )

    def __enter__(self) -> ScanProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def __call__(self, state: ScanState) -> None:
        if self._task is None:
            self._task = self.progress.add_task(
                state.status, total=state.total, found=state.found, running=""
            )
        self.progress.update(
            self._task,
            description=state.status,
            total=state.total,
            completed=state.completed,
            found=state.found,
            since=_epoch(state.created_at),
            until=_epoch(state.completed_at) if state.completed_at else None,
            running=_running(state),
        )


def _running(state: ScanState) -> str:
    """`running: a, b, c +2` (nothing once the scan ended or before anything runs)."""
    names = state.in_state("running")
    if state.finished or not names:
        return ""
    more = len(names) - RUNNING_SHOWN
    return "running: " + ", ".join(names[:RUNNING_SHOWN]) + (f" +{more}" if more > 0 else "")


class ScanElapsedColumn(ProgressColumn):
    """H:MM:SS the scan has run: since it was created, until it finished."""

    def render(self, task: Task) -> Text:
        until = task.fields.get("until") or time.time()
        seconds = max(0, int(until - task.fields.get("since", until)))
        return Text(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}")


def _table(title: str, caption: str | None = None) -> Table:
    return Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )


def _opportunity_cells(found: Mapping[str, Any]) -> tuple[str | Text, ...]:
    side = str(found["side"])
    return (
        str(found["symbol"]),
        str(found["strategy"]),
        Text(side, style=SIDE_STYLES.get(side, "")),
        f"{found['score']:.2f}",
        price_text(found["entry_price"]),
        price_text(found["stop_loss"]),
        price_text(found["take_profit"]),
        f"{found['expected_return']:.2%}",
    )


def price_text(value: float) -> str:
    """At least five significant digits and never an exponent: 123574, 3089.2,
    235.59, 0.00012346."""
    if value <= 0:
        return f"{value:g}"
    digits = math.floor(math.log10(value)) + 1  # before the point; negative below 0.1
    return f"{value:.{max(0, 5 - digits)}f}"


def _clock(stamp: str) -> str:
    """Local time of day, with the date when it is not today."""
    moment = datetime.fromisoformat(stamp).astimezone()
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def _last_change(state: ScanState) -> str:
    return state.completed_at or state.updated_at


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()
