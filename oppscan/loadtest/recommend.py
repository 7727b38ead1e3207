"""Which worker count to run, and why, from the figures of several configurations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from oppscan.loadtest.stats import Summary


@dataclass(frozen=True)
class Criteria:
    """How close to the best a configuration must come to be worth its fewer workers."""

    throughput_share: float = 0.9  # within 10% of the best requests/s
    p99_ratio: float = 1.25  # p99 at most 25% above the lowest clean p99 ...
    p99_slack_ms: float = 5.0  # ... or this many ms above it, whichever is looser


@dataclass(frozen=True)
class Recommendation:
    workers: int | None
    reason: str


def recommend(summaries: Sequence[Summary], criteria: Criteria | None = None) -> Recommendation:
    """The smallest worker count near the best throughput, with a p99 near the lowest and
    no failed request; the fewest failures when every configuration had some."""
    criteria = criteria or Criteria()
    measured = [s for s in summaries if s.workers is not None and s.requests > 0]
    if not measured:
        return Recommendation(None, "no configuration with a known worker count was measured")
    clean = [s for s in measured if s.failures == 0]
    if not clean:
        return _least_failing(measured)
    return _smallest_near_best(clean, criteria)


def p99_limit(clean: Sequence[Summary], criteria: Criteria) -> float:
    """The highest p99 still accepted: near the lowest p99 among clean configurations."""
    lowest = min(s.p99_ms for s in clean)
    return max(lowest * criteria.p99_ratio, lowest + criteria.p99_slack_ms)


def _smallest_near_best(clean: Sequence[Summary], criteria: Criteria) -> Recommendation:
    best = max(clean, key=lambda s: s.requests_per_s)
    floor = best.requests_per_s * criteria.throughput_share
    limit = p99_limit(clean, criteria)
    near = [s for s in clean if s.requests_per_s >= floor]
    fitting = [s for s in near if s.p99_ms <= limit]
    share = round((1 - criteria.throughput_share) * 100)
    if fitting:
        chosen = min(fitting, key=lambda s: _workers(s))
        return Recommendation(
            chosen.workers,
            f"{_name(chosen)}: the fewest workers within {share}% of the best throughput "
            f"({chosen.requests_per_s:.0f} vs {best.requests_per_s:.0f} req/s at {_name(best)}), "
            f"p99 {chosen.p99_ms:.1f} ms within the limit of {limit:.1f} ms, "
            "and no 404, 5xx, 503 or failed connection",
        )
    chosen = min(near, key=lambda s: s.p99_ms)
    return Recommendation(
        chosen.workers,
        f"{_name(chosen)}: the lowest p99 ({chosen.p99_ms:.1f} ms) among the configurations "
        f"within {share}% of the best throughput ({best.requests_per_s:.0f} req/s at "
        f"{_name(best)}); none of them kept p99 under {limit:.1f} ms",
    )


def _least_failing(measured: Sequence[Summary]) -> Recommendation:
    chosen = min(measured, key=lambda s: (s.failures, -s.requests_per_s))
    return Recommendation(
        chosen.workers,
        f"{_name(chosen)}: every configuration had failed requests (404, 5xx, 503 or no "
        f"answer); this one had the fewest ({chosen.failures}) - investigate before tuning",
    )


def _workers(summary: Summary) -> int:
    return summary.workers or 0


def _name(summary: Summary) -> str:
    count = _workers(summary)
    return f"{count} worker" + ("" if count == 1 else "s")
