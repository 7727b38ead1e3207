"""A PNG of throughput and p99 against worker count (matplotlib, Agg canvas, no pyplot)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from oppscan.loadtest.stats import Summary


def chartable(summaries: Sequence[Summary]) -> list[Summary]:
    """The configurations with a known worker count, by worker count."""
    return sorted((s for s in summaries if s.workers is not None), key=lambda s: s.workers or 0)


def draw_chart(summaries: Sequence[Summary], path: Path) -> None:
    """Requests/s as bars (left axis) and p99 as a line (right axis), per worker count."""
    # Imported here: matplotlib is needed only when a chart is asked for.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = chartable(summaries)
    if not points:
        raise ValueError("no configuration with a known worker count to chart")
    labels = [str(s.workers) for s in points]
    figure = Figure(figsize=(7.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    throughput = figure.add_subplot()
    bars = throughput.bar(labels, [s.requests_per_s for s in points], color="tab:blue", alpha=0.7)
    throughput.bar_label(bars, fmt="%.0f")
    throughput.set_ylim(0, max(s.requests_per_s for s in points) * 1.15 or 1.0)
    throughput.set_xlabel("gunicorn workers")
    throughput.set_ylabel("requests/s", color="tab:blue")
    latency = throughput.twinx()
    p99 = [s.p99_ms for s in points]
    latency.plot(labels, p99, color="tab:red", marker="o")
    latency.set_ylabel("p99 latency (ms)", color="tab:red")
    latency.set_ylim(0, max(p99) * 1.2 or 1.0)
    threads = {s.threads for s in points}
    suffix = f", {threads.pop()} threads each" if len(threads) == 1 else ""
    figure.suptitle(f"oppscan throughput and p99 by worker count{suffix}")
    figure.savefig(path, format="png", dpi=100)
