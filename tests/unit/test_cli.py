"""The `oppscan` command line."""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from oppscan import gunicorn_config
from oppscan.auth import TokenVerifier
from oppscan.cli import main
from oppscan.settings import Settings


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


def test_version_prints_the_installed_version_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """`oppscan --version` prints `oppscan X.Y.Z` from the installed metadata, on stdout."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    out, err = capsys.readouterr()
    assert (0, f"oppscan {importlib.metadata.version('oppscan')}\n", "") == (
        exited.value.code,
        out,
        err,
    )


def test_a_token_minted_in_any_directory_is_accepted_by_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With neither OPPSCAN_DATA_DIR nor OPPSCAN_SECRET, `oppscan token` run in one
    directory signs with the secret a server started in another one verifies with (the
    user's data dir), prints only the token, on stdout, and writes nothing where it ran."""
    monkeypatch.delenv("OPPSCAN_DATA_DIR", raising=False)
    monkeypatch.delenv("OPPSCAN_SECRET", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    server, client = tmp_path / "server", tmp_path / "client"
    server.mkdir()
    client.mkdir()
    monkeypatch.chdir(server)
    verifier = TokenVerifier.from_settings(Settings.from_env())  # as each worker builds it
    monkeypatch.chdir(client)
    assert 0 == main(["token", "--user", "zoe"])
    out, err = capsys.readouterr()
    assert ("zoe", "") == (verifier.user_of(out.strip()), err)
    assert ([], []) == (list(server.iterdir()), list(client.iterdir()))
    assert (tmp_path / "xdg" / "oppscan" / "secret").is_file()


def test_serve_prints_its_token_on_stdout_never_on_the_log_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once ready, `oppscan serve` prints its URL, data dir, secret's place and the
    demo token on stdout; stderr, where its logs go, gets none of it."""
    settings = Settings.from_env({"OPPSCAN_DATA_DIR": str(tmp_path)})
    monkeypatch.setattr(gunicorn_config, "_settings", settings)
    gunicorn_config.when_ready(object())
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert ("", 4) == (err, len(lines))
    assert [f"data:   {tmp_path}", f"secret: {tmp_path / 'secret'}"] == lines[1:3]
    token = lines[3].removeprefix("demo bearer token: ")
    assert "demo" == TokenVerifier.from_settings(settings).user_of(token)
