"""gunicorn's logger, writing its own lines (starts, signals, worker boots and
exits, errors with their tracebacks) as the JSON events the workers write, so
that stderr is one JSON object a line from the master's first line on.

Requests are logged by the app (`RequestContext`), which knows the route, the
user and the request id; gunicorn's access log stays off.
"""

from __future__ import annotations

import logging
from typing import Any

from gunicorn import glogging

from oppscan.logs import json_handler


class JsonLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn is untyped
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        handler = json_handler()
        logging.captureWarnings(True)  # Python's warnings: JSON events too
        for logger in (self.error_log, self.access_log, logging.getLogger("py.warnings")):
            logger.handlers[:] = [handler]
            logger.propagate = False
