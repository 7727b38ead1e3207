"""The actors: one ScanActor per running scan, one RegistryActor per worker."""

from oppscan.actors.registry import CacheStats, RegistryActor, Resolution
from oppscan.actors.scan import Registrar, ScanActor, ScanDeps
from oppscan.actors.strategy_run import ScanFailure, run_strategy
from oppscan.model import ScanJob

__all__ = [
    "CacheStats",
    "Registrar",
    "RegistryActor",
    "Resolution",
    "ScanActor",
    "ScanDeps",
    "ScanFailure",
    "ScanJob",
    "run_strategy",
]
