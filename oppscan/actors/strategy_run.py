"""Running one strategy on an executor thread, turning every outcome into a value."""

from __future__ import annotations

import time
from dataclasses import dataclass

from oppscan.logs import get_logger
from oppscan.market import MarketDataError
from oppscan.model import StrategyResult
from oppscan.strategies import Strategy, StrategyContext, StrategySkipped

log = get_logger("oppscan.strategy")


@dataclass(frozen=True)
class ScanFailure:
    """The data source failed in a way that fails the whole scan (a bad file)."""

    strategy: str
    error: str


def run_strategy(
    strategy: Strategy, ctx: StrategyContext, scan_id: str
) -> StrategyResult | ScanFailure:
    """Never raises: skipped, error and market failures become values."""
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    name = strategy.name
    try:
        found = strategy.run(ctx)
    except StrategySkipped as skip:
        return StrategyResult(name, "skipped", (), elapsed(), skip.reason)
    except MarketDataError as exc:
        return ScanFailure(name, str(exc))
    except Exception as exc:
        log.warning("strategy_error", scan_id=scan_id, strategy=name, failure_reason=repr(exc))
        return StrategyResult(name, "error", (), elapsed(), f"{type(exc).__name__}: {exc}")
    opportunities = tuple(o.to_dict() for o in found)
    return StrategyResult(name, "ok", opportunities, elapsed())
