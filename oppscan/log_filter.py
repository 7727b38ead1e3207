"""`oppscan logs`: one scan's, one request's or one user's events, from the log
streams of every worker and host, in time order.

Reads JSON lines from the files given (or stdin), skips any other line, and
prints the events that match as they were written, sorted by their
`timestamp`. A user is matched by name or by the digest `OPPSCAN_LOG_USER=hash`
logs (computed with the token secret at hand, as the servers compute it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from oppscan.logs import UserField
from oppscan.settings import Settings

USER_FIELDS = ("user", "owner_user")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", help="log files (default: stdin)")
    parser.add_argument("--scan", help="a scan id")
    parser.add_argument("--request", help="a request id (X-Request-ID)")
    parser.add_argument("--user", help="a user name")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    if not (args.scan or args.request or args.user):
        print("oppscan: logs needs --scan, --request or --user", file=sys.stderr)
        return 2
    wanted = _matcher(args)
    found = sorted(
        (event.get("timestamp", ""), line)
        for line, event in _events(_lines(args.files))
        if wanted(event)
    )
    for _, line in found:
        out.write(line if line.endswith("\n") else line + "\n")
    return 0


def _matcher(args: argparse.Namespace) -> Any:
    names: set[str] = set()
    if args.user:
        secret = Settings.from_env().available_secret() or ""
        names = {args.user, UserField("hash", secret)(args.user) or ""}

    def wanted(event: dict[str, Any]) -> bool:
        return (
            (args.scan is None or event.get("scan_id") == args.scan)
            and (args.request is None or event.get("request_id") == args.request)
            and (args.user is None or any(event.get(f) in names for f in USER_FIELDS))
        )

    return wanted


def _lines(files: Iterable[str]) -> Iterator[str]:
    paths = list(files)
    if not paths:
        yield from sys.stdin
        return
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as stream:
            yield from stream


def _events(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    for line in lines:
        if not line.startswith("{"):
            continue  # what a server prints for its user, or another program's line
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield line, event
