"""`oppscan serve` and `oppscan token` run anywhere by one user share its data dir and secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.polling import poll_until
from tests.support.serve import Serve

TOKEN_LINE = "demo bearer token: "


def mint(user: str, cwd: Path, xdg_data_home: Path) -> str:
    """`oppscan token` in `cwd`, with no OPPSCAN_ variable set: its stdout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPPSCAN_")}
    command = [sys.executable, "-m", "oppscan.cli", "token", "--user", user]
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**env, "XDG_DATA_HOME": str(xdg_data_home)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "" == done.stderr
    return done.stdout.strip()


def status_with(serve: Serve, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.get(f"{serve.url}/api/v1/strategies", headers=headers, timeout=10).status_code


def test_a_token_minted_elsewhere_is_accepted_and_no_token_reaches_the_log(
    tmp_path: Path,
) -> None:
    """With neither OPPSCAN_DATA_DIR nor OPPSCAN_SECRET, serve keeps its data in the
    user's data dir, prints where and the demo token on stdout (never on its log), and
    accepts a token `oppscan token` minted in another directory."""
    xdg = tmp_path / "xdg"
    data = xdg / "oppscan"
    env = {"OPPSCAN_DATA_DIR": "", "OPPSCAN_SECRET": "", "XDG_DATA_HOME": str(xdg)}
    serve = Serve(tmp_path / "serve", env=env).start()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    try:
        serve.wait_ready()
        poll_until(lambda: TOKEN_LINE in serve.out_text(), 10)
        printed = serve.out_text().splitlines()
        demo = printed[3].removeprefix(TOKEN_LINE)
        minted = mint("zoe", elsewhere, xdg)
        assert (200, 200) == (status_with(serve, demo), status_with(serve, minted))
        assert 401 == status_with(serve, mint("zoe", elsewhere, tmp_path / "other-user"))
    finally:
        serve.interrupt()
        serve.exit_code()
    assert [f"data:   {data}", f"secret: {data / 'secret'}"] == printed[1:3]
    log = serve.log_text()
    assert (False, False) == (demo in log, minted in log)
    assert {"secret", "serve.lock", "redis", "metrics"} <= {p.name for p in data.iterdir()}
    assert ".oppscan" not in {p.name for p in (tmp_path / "serve").iterdir()}
