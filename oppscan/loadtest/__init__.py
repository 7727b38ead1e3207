"""Load tests of oppscan: the real client pattern against servers it starts or a given URL.

`stats`, `recommend` and `report` are pure; `scenario` and `client` do the HTTP;
`servers` starts gunicorn and Redis; `command` ties them together for the CLI.
"""

from rich.console import Console

from oppscan.loadtest.options import Options, add_arguments, worker_counts
from oppscan.loadtest.recommend import Criteria, Recommendation, recommend
from oppscan.loadtest.report import (
    comparison_table,
    configuration_table,
    recommendation_text,
    report_document,
)
from oppscan.loadtest.scenario import Plan, run_load, symbols_for
from oppscan.loadtest.stats import (
    Config,
    Sample,
    ScanCounts,
    Summary,
    median_runs,
    percentile,
    summarize,
)


def run(options: Options, console: Console | None = None, errors: Console | None = None) -> int:
    """Run the load test the options describe; the exit status.

    The runner (which starts servers and so loads the storage and metrics
    modules) is imported only now: `oppscan serve` builds the same argument
    parser and must not load prometheus_client before gunicorn's master has
    chosen the metrics folder.
    """
    from oppscan.loadtest.command import run as run_command

    return run_command(options, console, errors)


__all__ = [
    "Config",
    "Criteria",
    "Options",
    "Plan",
    "Recommendation",
    "Sample",
    "ScanCounts",
    "Summary",
    "add_arguments",
    "comparison_table",
    "configuration_table",
    "median_runs",
    "percentile",
    "recommend",
    "recommendation_text",
    "report_document",
    "run",
    "run_load",
    "summarize",
    "symbols_for",
    "worker_counts",
]
