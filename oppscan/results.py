"""The final results document: ranked, capped, computed once by the owner.

Every worker serves the stored bytes as they are, so bodies are identical
whichever worker answers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from oppscan.model import (
    ScanParams,
    ScanSnapshot,
    ScanStatus,
    StrategyResult,
    millis_between,
    rank,
)


def build_partial(snapshot: ScanSnapshot, done: Sequence[StrategyResult], cap: int) -> bytes:
    """What a running scan has found so far: its status, and the opportunities of the
    strategies recorded in Redis, ranked and capped. Built from Redis alone, so every
    worker renders the same bytes for the same state."""
    everything = [o for r in done for o in r.opportunities]
    body = {
        **snapshot.status_body(),
        "partial": True,
        "opportunities": rank(everything)[:cap],
        "strategy_performance": {r.name: r.performance() for r in sorted(done, key=_name)},
        "metadata": {
            "total_strategies": snapshot.total,
            "strategies_completed": len(done),
            "opportunities_total": len(everything),
        },
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _name(result: StrategyResult) -> str:
    return result.name


def build_results(
    scan_id: str,
    status: ScanStatus,
    params: ScanParams,
    strategy_results: Mapping[str, StrategyResult],
    started_at: str,
    completed_at: str,
    cap: int,
    error: str | None = None,
    market: Mapping[str, Any] | None = None,
) -> bytes:
    """Serialise the results body of a terminal scan."""
    everything = [o for r in strategy_results.values() for o in r.opportunities]
    body: dict[str, Any] = {
        "scan_id": scan_id,
        "status": status.value,
        "opportunities": rank(everything)[:cap],
        "strategy_performance": {
            name: strategy_results[name].performance() for name in sorted(strategy_results)
        },
        "metadata": {
            "total_strategies": len(params.strategies),
            "strategies_completed": len(strategy_results),
            "symbols_scanned": len(params.symbols),
            "timeframe": params.timeframe,
            "started_at": started_at,
            "completed_at": completed_at,
            "duration_ms": millis_between(started_at, completed_at),
            "opportunities_total": len(everything),
        },
    }
    if market is not None:  # how this owner had the market series it needed
        body["metadata"]["market"] = dict(market)
    if error is not None:
        body["error"] = error
    return json.dumps(body, separators=(",", ":")).encode()
