"""`oppscan scan`, `status`, `results`, `cancel`, `scans`: the API from a shell,
through `oppscan.client`.

The service is `--url`, else `OPPSCAN_URL`, else http://127.0.0.1:8000; the
token `--token`, else `OPPSCAN_TOKEN`, else one signed here for `--user` with
the secret at hand (`OPPSCAN_SECRET`, or the data dir's, as `oppscan token`
does; never a new one). Tables and the progress bar are for people; `--json`
and `--csv` print only the document, for scripts. Messages go to stderr, one
line each.

Exit statuses:

    0    the scan completed; or the status, list or cancel was answered
    1    the scan failed or was cancelled; or the service refused the request
         (400, 401, 404, 409, 429 after the client's waits): its detail on stderr
    2    usage error (argparse)
    3    the service is unreachable, or still answered 503 after the client's waits
    4    `results` of a scan that has not finished (what it found so far is printed)
    130  Ctrl-C; a scan being followed keeps running on the server
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from rich.console import Console

from oppscan.auth import settings_token
from oppscan.client import (
    ApiError,
    Client,
    OppscanError,
    Results,
    Scan,
    ServiceUnreachable,
    Unauthorized,
    Unavailable,
)
from oppscan.scan_view import (
    ScanProgress,
    json_text,
    opportunities_csv,
    opportunities_table,
    scans_table,
    status_table,
)
from oppscan.settings import Settings, SettingsError

DEFAULT_URL = "http://127.0.0.1:8000"
TOKEN_TTL = 86400  # seconds a token signed here lasts: longer than any scan is followed
PIPED_WIDTH = 160  # columns of a table printed to a pipe or file (rich would take 80)
COMMANDS = frozenset({"scan", "status", "results", "cancel", "scans"})

Connect = Callable[[str, str], Client]


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    USAGE = 2
    UNREACHABLE = 3
    NOT_FINISHED = 4
    INTERRUPTED = 130


def exit_code(error: OppscanError) -> Exit:
    """No answer, or only 503s until the client stopped waiting: unreachable. Any
    other refusal: failed."""
    if isinstance(error, ServiceUnreachable | Unavailable):
        return Exit.UNREACHABLE
    return Exit.FAILED


class NoToken(Exception):
    """Neither a token given nor a secret at hand to sign one."""


@dataclass(frozen=True)
class Target:
    """The service to talk to, and the token to show it."""

    url: str
    token: str = field(repr=False)
    signed_with: str | None = None  # the secret's origin, when the token was signed here

    @classmethod
    def resolve(cls, args: argparse.Namespace, settings: Settings) -> Target:
        url = args.url or settings.url or DEFAULT_URL
        token = args.token or settings.token
        if token:
            return cls(url, token)
        secret = settings.available_secret()  # never a new one: the server would refuse it
        if secret is None:
            raise NoToken(
                "no token: pass --token or set OPPSCAN_TOKEN (or OPPSCAN_SECRET, or "
                "OPPSCAN_DATA_DIR, to the server's, to sign one here)"
            )
        origin = "OPPSCAN_SECRET" if settings.secrets() else str(settings.secret_file.resolve())
        return cls(url, settings_token(settings, args.user, TOKEN_TTL, secret), origin)

    def explain(self, error: OppscanError) -> str:
        """The error on one line, with what may help."""
        text = " ".join(str(error).split())
        if isinstance(error, ServiceUnreachable):
            return f"no answer from {text}"
        if isinstance(error, Unavailable):
            return f"{text} (still, after the client's waits)"
        if isinstance(error, ApiError) and not error.detail:  # not an error oppscan sends
            return f"{text} (is {self.url} an oppscan service?)"
        if isinstance(error, Unauthorized) and self.signed_with:
            hint = "pass --token or set OPPSCAN_TOKEN"
            return f"{text} (the token was signed here with {self.signed_with}; {hint})"
        return text


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client commands on the `oppscan` parser's subcommands."""
    common = _common_arguments()
    scan = commands.add_parser(
        "scan", parents=[common], help="start a scan, follow it, show its best opportunities"
    )
    scan.add_argument(
        "--strategies", type=names, metavar="A,B", help="comma-separated (default: all)"
    )
    scan.add_argument("--symbols", type=names, metavar="X,Y", help="comma-separated (default: all)")
    scan.add_argument("--timeframe", metavar="TF", help="e.g. 15m, 1h, 1d (default: 1h)")
    scan.add_argument(
        "--force-refresh", action="store_true", help="run again even if an identical scan finished"
    )
    _shown_arguments(scan, "print the results document")
    status = commands.add_parser("status", parents=[common], help="a scan's status")
    status.add_argument("scan_id", metavar="SCAN_ID")
    status.add_argument("--follow", action="store_true", help="follow it to its results")
    _shown_arguments(status, "print the status document (with --follow: the results document)")
    results = commands.add_parser("results", parents=[common], help="a finished scan's results")
    results.add_argument("scan_id", metavar="SCAN_ID")
    _shown_arguments(results, "print the results document", csv=True)
    cancel = commands.add_parser("cancel", parents=[common], help="cancel a scan")
    cancel.add_argument("scan_id", metavar="SCAN_ID")
    scans = commands.add_parser("scans", parents=[common], help="your scans, newest first")
    scans.add_argument("--limit", type=positive, default=50, metavar="N", help="at most N (50)")
    scans.add_argument("--json", action="store_true", help="print the API's document")


def names(text: str) -> list[str]:
    """`"a,b"` as `["a", "b"]`: at least one name."""
    found = [word.strip() for word in text.split(",") if word.strip()]
    if not found:
        raise argparse.ArgumentTypeError(f"expects comma-separated names, got {text!r}")
    return found


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expects a positive integer, got {text!r}")
    return value


def run(args: argparse.Namespace, connect: Connect = Client) -> int:
    """Run the client command `args` names; the exit status."""
    try:
        target = Target.resolve(args, Settings.from_env())
    except SettingsError as exc:
        return _failed(str(exc))
    except NoToken as exc:
        return _failed(str(exc))
    except OSError as exc:  # the data dir's secret cannot be read
        return _failed(f"no token: {exc}; pass --token or set OPPSCAN_TOKEN")
    try:
        with connect(target.url, target.token) as client:
            return HANDLERS[args.command](client, args)
    except OppscanError as exc:
        _say(target.explain(exc), *getattr(exc, "__notes__", ()))
        return exit_code(exc)
    except KeyboardInterrupt as exc:
        _say(*getattr(exc, "__notes__", ()))
        return Exit.INTERRUPTED


def _scan(client: Client, args: argparse.Namespace) -> int:
    scan = client.discover(args.strategies, args.symbols, args.timeframe, args.force_refresh)
    if not args.json:
        _say(_started(scan))
    return _follow(scan, args)


def _status(client: Client, args: argparse.Namespace) -> int:
    scan = client.scan(args.scan_id)
    if args.follow:
        return _follow(scan, args)
    state = scan.status()
    if args.json:
        sys.stdout.write(json_text(state.body))
    else:
        _stdout().print(status_table(state))
    return Exit.OK


def _results(client: Client, args: argparse.Namespace) -> int:
    return _show(client.scan(args.scan_id).results(), args)


def _cancel(client: Client, args: argparse.Namespace) -> int:
    state = client.scan(args.scan_id).cancel()
    if state.finished:
        _say(f"{state.scan_id} {state.status}")
    else:
        _say(f"{state.scan_id} cancelling: it stops at its next strategy boundary")
    return Exit.OK


def _scans(client: Client, args: argparse.Namespace) -> int:
    states = client.scans(args.limit)
    if args.json:
        sys.stdout.write(json_text({"scans": [s.body for s in states]}))
    else:
        _stdout().print(scans_table(states))
    return Exit.OK


HANDLERS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "scan": _scan,
    "status": _status,
    "results": _results,
    "cancel": _cancel,
    "scans": _scans,
}


def _follow(scan: Scan, args: argparse.Namespace) -> int:
    """Wait for the scan (a progress bar on stderr unless --json), then show its results.
    An interruption says how to pick the scan up again."""
    try:
        if args.json:
            results = scan.wait()
        else:
            with ScanProgress.on(Console(stderr=True)) as progress:
                results = scan.wait(on_progress=progress)
    except KeyboardInterrupt as exc:
        exc.add_note(f"stopped following {scan.scan_id}; it keeps running on the server")
        exc.add_note(_follow_hint(scan.scan_id, again=True))
        raise
    except OppscanError as exc:
        exc.add_note(_follow_hint(scan.scan_id, again=True))
        raise
    return _show(results, args)


def _show(results: Results, args: argparse.Namespace) -> int:
    """Print the results as asked; the exit status their scan's ending calls for."""
    if getattr(args, "csv", False):
        sys.stdout.write(opportunities_csv(results))
    elif args.json:
        sys.stdout.write(json_text(results.body))
    else:
        _stdout().print(opportunities_table(results, args.top))
    scan_id = results.body["scan_id"]
    if results.partial:
        return _failed(
            f"{scan_id} has not finished: what it found so far; {_follow_hint(scan_id)}",
            Exit.NOT_FINISHED,
        )
    if results.status == "complete":
        return Exit.OK
    return _failed(f"{scan_id} {results.status}: {results.error}")


def _started(scan: Scan) -> str:
    if scan.first.get("cached"):
        return f"{scan.scan_id}: an identical scan finished already (--force-refresh runs it again)"
    if scan.first.get("deduplicated"):
        return f"{scan.scan_id}: joined your identical scan, running already"
    return f"{scan.scan_id}: started"


def _follow_hint(scan_id: str, again: bool = False) -> str:
    return f"follow it{' again' if again else ''} with: oppscan status --follow {scan_id}"


def _common_arguments() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"the service (default: $OPPSCAN_URL, else {DEFAULT_URL})")
    common.add_argument(
        "--token", help="bearer token (default: $OPPSCAN_TOKEN, else one signed here for --user)"
    )
    common.add_argument("--user", default="demo", help="whose token to sign (default: demo)")
    return common


def _shown_arguments(parser: argparse.ArgumentParser, json_help: str, csv: bool = False) -> None:
    """How results are shown: a table of the `--top` best, or a document for scripts."""
    parser.add_argument(
        "--top", type=positive, default=20, metavar="N", help="the table shows the best N (20)"
    )
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help=json_help)
    if csv:
        formats.add_argument("--csv", action="store_true", help="print every opportunity as CSV")


def _stdout() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=PIPED_WIDTH)


def _failed(message: str, code: Exit = Exit.FAILED) -> int:
    _say(message)
    return code


def _say(*lines: str) -> None:
    for line in lines:
        print(f"oppscan: {line}", file=sys.stderr)
