"""The `oppscan` command: `serve` the API, print a `token`, run a `loadtest`, follow
`logs`, and use the API: `scan`, `status`, `results`, `cancel`, `scans`
(`oppscan/scan_cli.py`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from oppscan import installed_version, loadtest, log_filter, scan_cli
from oppscan.auth import settings_token
from oppscan.processes import GUNICORN_CONFIG
from oppscan.settings import PREFIX, Settings, SettingsError


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "token":
        print(settings_token(Settings.from_env(), args.user, args.ttl))
        return 0
    if args.command == "loadtest":
        return loadtest.run(loadtest.Options.from_args(args))
    if args.command == "logs":
        return log_filter.run(args)
    if args.command in scan_cli.COMMANDS:
        return scan_cli.run(args)
    _parser().print_help()
    return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oppscan", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {installed_version()}")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the API under gunicorn")
    serve.add_argument("--bind", help="address to listen on (default 127.0.0.1:8000)")
    serve.add_argument("--workers", type=int, help="worker processes (default 2)")
    serve.add_argument("--threads", type=int, help="threads per worker (default 4)")
    serve.add_argument("--redis-url", help="Redis to use; an embedded one when omitted")
    token = commands.add_parser("token", help="print a bearer token for a user")
    token.add_argument("--user", required=True)
    token.add_argument("--ttl", type=int, default=86400, help="seconds until it expires")
    loadtest.add_arguments(commands.add_parser("loadtest", help="measure throughput and latency"))
    log_filter.add_arguments(
        commands.add_parser("logs", help="one scan's, request's or user's events, in order")
    )
    scan_cli.add_commands(commands)
    return parser


def _serve(args: argparse.Namespace) -> int:
    _export_flags(args)
    try:
        Settings.from_env()  # master and workers read them again; a bad one stops us here
    except SettingsError as exc:
        print(f"oppscan: {exc}", file=sys.stderr)
        return 1
    return _run_gunicorn()


def _export_flags(args: argparse.Namespace) -> None:
    """Flags become settings the same way the environment does, for master and workers."""
    for name, value in (
        ("BIND", args.bind),
        ("WORKERS", args.workers),
        ("THREADS", args.threads),
        ("REDIS_URL", args.redis_url),
    ):
        if value is not None:
            os.environ[PREFIX + name] = str(value)


def _run_gunicorn() -> int:
    from gunicorn.app.wsgiapp import WSGIApplication
    from gunicorn.errors import HaltServer

    sys.argv = ["oppscan serve", "-c", GUNICORN_CONFIG]
    try:
        WSGIApplication("%(prog)s [OPTIONS]").run()
    except HaltServer as exc:  # a worker could not boot, seen while the master was stopping
        print(f"oppscan: {exc.reason}", file=sys.stderr)
        return int(exc.exit_status)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
