"""The HTTP face of oppscan: a thin Falcon app."""

from oppscan.http.app import create_app, get_app, shutdown

__all__ = ["create_app", "get_app", "shutdown"]
