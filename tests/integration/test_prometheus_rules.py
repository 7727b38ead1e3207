"""The alert and recording rules and the dashboard that ship in deploy/: promtool
checks and unit-tests the rules, and every metric they name is one oppscan exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

import oppscan.metrics  # noqa: F401 - registers every metric

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "oppscan.rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "oppscan.rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "oppscan.json"
INSTALL = "apt-get install -y --no-install-recommends prometheus"
SAMPLE_SUFFIXES = {"counter": ("",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(f"promtool not found: the rules' tests need `{INSTALL}`")
    return subprocess.run(
        [found, *args], capture_output=True, text=True, timeout=60, check=False, cwd=RULES.parent
    )


def test_the_rules_are_valid() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert 0 == checked.returncode, checked.stdout + checked.stderr


def test_the_rules_fire_as_their_tests_say() -> None:
    """Each alert fires on the series of its test case and stays quiet before its `for`."""
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert 0 == tested.returncode, tested.stdout + tested.stderr
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
              if "alert" in r}  # fmt: skip
    assert alerts <= set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))


def exported() -> set[str]:
    """Every sample name oppscan's metrics can have (from their TYPE lines, which name
    a counter with its `_total`)."""
    text = generate_latest(REGISTRY).decode()
    names = set()
    for name, kind in re.findall(r"^# TYPE (oppscan_\w+) (\w+)$", text, re.M):
        names.update(name + suffix for suffix in SAMPLE_SUFFIXES[kind])
    return names


def queries() -> list[str]:
    rules = [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return rules + [t["expr"] for p in panels for t in p["targets"]]


def test_every_query_names_metrics_oppscan_exports() -> None:
    """A rule or a panel over a metric renamed or gone would show nothing, silently."""
    recorded = {
        r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
        if "record" in r
    }  # fmt: skip
    names = exported()
    unknown = [
        (name, expr)
        for expr in queries()
        for name in re.findall(r"\b(oppscan_\w+|oppscan:[\w:]+)", expr)
        if name not in names and name not in recorded
    ]
    assert [] == unknown
    assert {"oppscan_http_requests_total", "oppscan_oldest_running_scan_seconds"} <= names
