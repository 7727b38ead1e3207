"""Figures: one row each of the results table, and the JSON written beside it."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HEADERS = ("figure", "oppscan", "baseline", "ratio", "target", "result")


@dataclass(frozen=True)
class Figure:
    """One measured figure, its baseline from the same run, and its target."""

    key: str
    name: str
    value: float
    unit: str
    baseline: float | None
    baseline_name: str
    ratio: float | None
    target: str
    passed: bool | None  # None: reported, no target
    baseline_unit: str = ""  # when not `unit`

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "info"}[self.passed]

    def row(self) -> tuple[str, ...]:
        baseline = (
            f"{_num(self.baseline)} {self.baseline_unit or self.unit} ({self.baseline_name})"
            if self.baseline is not None
            else "-"
        )
        ratio = f"{self.ratio:.2f}" if self.ratio is not None else "-"
        return (
            f"{self.key} {self.name}",
            f"{_num(self.value)} {self.unit}",
            baseline,
            ratio,
            self.target,
            self.verdict,
        )


def _num(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(figures: Sequence[Figure]) -> str:
    rows = [HEADERS, *(f.row() for f in figures)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_json(
    path: Path, figures: Sequence[Figure], details: Mapping[str, Any], settings: Mapping[str, Any]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "settings": dict(settings),
        "figures": [{**asdict(f), "result": f.verdict} for f in figures],
        "details": dict(details),
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
