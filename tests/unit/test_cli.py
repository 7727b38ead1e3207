"""The `oppscan` command line."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import jwt
import pytest

from oppscan.cli import main


def test_building_the_cli_does_not_load_prometheus_client() -> None:
    """`oppscan serve` runs gunicorn's master in-process: the metrics library must be
    loaded only after the master chose the metrics folder, i.e. not by the CLI."""
    probe = (
        "import sys; from oppscan import cli; cli._parser(); "
        "print(sorted(m for m in ('prometheus_client', 'oppscan.storage') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert "[]" == out.strip()


def test_token_command_prints_a_token_for_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """`oppscan token --user NAME` prints a JWT whose subject is NAME."""
    monkeypatch.setenv("OPPSCAN_SECRET", "cli-secret-0123456789abcdefghijklmnop")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert 0 == main(["token", "--user", "zoe", "--ttl", "60"])
    claims = jwt.decode(
        printed.getvalue().strip(), "cli-secret-0123456789abcdefghijklmnop", algorithms=["HS256"]
    )
    assert "zoe" == claims["sub"]
