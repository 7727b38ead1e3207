"""The actors: one ScanActor per running scan, one RegistryActor per worker,
and the views they publish for request threads."""

from oppscan.actors.registry import RegistryActor
from oppscan.actors.scan import Registrar, ScanActor, ScanDeps, first_snapshot
from oppscan.actors.strategy_run import (
    ProcessStrategyPool,
    ScanFailure,
    StrategyPool,
    ThreadStrategyPool,
    run_strategy,
)
from oppscan.actors.views import (
    CellBusy,
    Owned,
    RegistryView,
    Resolution,
    SnapshotCell,
)
from oppscan.model import ScanJob

__all__ = [
    "CellBusy",
    "Owned",
    "ProcessStrategyPool",
    "Registrar",
    "RegistryActor",
    "RegistryView",
    "Resolution",
    "ScanActor",
    "ScanDeps",
    "ScanFailure",
    "ScanJob",
    "SnapshotCell",
    "StrategyPool",
    "ThreadStrategyPool",
    "first_snapshot",
    "run_strategy",
]
