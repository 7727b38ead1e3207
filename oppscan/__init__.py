"""oppscan: opportunity scans behind a multi-worker web service."""

import importlib.metadata


def installed_version() -> str:
    """The version pip installed (its metadata), or `unknown` in a checkout never installed."""
    try:
        return importlib.metadata.version("oppscan")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
