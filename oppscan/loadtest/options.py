"""The `oppscan loadtest` flags, and the options they resolve to."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from oppscan.loadtest.scenario import Plan


def worker_counts(text: str) -> tuple[int, ...]:
    """`"1,2,4"` as `(1, 2, 4)`: positive, distinct, in the order given."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--workers takes a comma list of integers, got {text!r}") from None
    if not counts or any(c < 1 for c in counts) or len(set(counts)) != len(counts):
        raise ValueError(f"--workers takes distinct positive integers, got {text!r}")
    return counts


@dataclass(frozen=True)
class Options:
    plan: Plan
    url: str | None = None
    token: str | None = None
    allow_remote: bool = False
    workers: tuple[int, ...] = (1, 2, 4)
    threads: int = 4
    latency_ms: float = 0.0
    out: Path | None = None
    chart: Path | None = None
    log_dir: Path | None = None
    repeat: int = 1

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        plan = Plan(
            duration_s=args.duration,
            users=args.users,
            pollers=args.pollers,
            symbols_per_scan=args.symbols_per_scan,
            max_requests=args.max_requests,
            think_s=args.think_ms / 1000.0,
        )
        return cls(
            plan=plan,
            url=args.url,
            token=args.token,
            allow_remote=args.allow_remote,
            workers=args.workers,
            threads=args.threads,
            latency_ms=args.latency_ms,
            out=args.out,
            chart=args.chart,
            log_dir=args.log_dir,
            repeat=args.repeat,
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `oppscan loadtest`."""
    parser.description = (
        "Users start scans and pollers follow them to the end, against --url or against one "
        "gunicorn per --workers count started here on one Redis; prints a table per "
        "configuration and a recommended worker count."
    )
    target = parser.add_argument_group("what to load")
    target.add_argument("--url", help="a running service; without it, servers are started here")
    target.add_argument(
        "--token",
        help="bearer token for --url, sent by every user; when omitted, one per user signed "
        "with the secret at hand (OPPSCAN_SECRET, or the data dir's)",
    )
    target.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --url that is not on this machine's loopback",
    )
    target.add_argument(
        "--workers",
        type=_worker_counts,
        default="1,2,4",
        help="worker counts to compare, one server each (default %(default)s)",
    )
    target.add_argument(
        "--threads", type=_positive_int, default=4, help="threads per worker (default %(default)s)"
    )
    target.add_argument(
        "--latency-ms",
        type=_non_negative,
        default=0.0,
        help="OPPSCAN_SYNTHETIC_LATENCY_MS of the servers started here (default %(default)s)",
    )
    load = parser.add_argument_group("the load")
    load.add_argument(
        "--duration",
        type=_positive,
        default=15.0,
        help="seconds per configuration (default %(default)s)",
    )
    load.add_argument(
        "--users", type=_positive_int, default=4, help="users starting scans (default %(default)s)"
    )
    load.add_argument(
        "--pollers",
        type=_positive_int,
        default=16,
        help="threads polling scans (default %(default)s)",
    )
    load.add_argument(
        "--symbols-per-scan",
        type=_positive_int,
        default=8,
        help="symbols in each user's scans (default %(default)s)",
    )
    load.add_argument(
        "--think-ms",
        type=_non_negative,
        default=0.0,
        help="pause of a poller between polls, 0 for none (default %(default)s)",
    )
    load.add_argument(
        "--max-requests",
        type=_positive_int,
        default=200_000,
        help="hard cap on requests per configuration (default %(default)s)",
    )
    load.add_argument(
        "--repeat",
        type=_positive_int,
        default=1,
        help="run the configurations this many times, interleaved; report each one's median run",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--out", type=Path, help="write the figures as JSON")
    output.add_argument("--chart", type=Path, help="draw throughput and p99 by workers (PNG)")
    output.add_argument(
        "--log-dir",
        type=Path,
        help="keep the started servers' logs and data here; when omitted they are removed",
    )


def _worker_counts(text: str) -> tuple[int, ...]:
    try:
        return worker_counts(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value
