"""The baseline: a plain Falcon app answering a constant JSON document of about 300 bytes.

Served by gunicorn with oppscan's worker settings, it measures what gunicorn,
Falcon and the loopback cost on this machine, so oppscan's figures can be
given as ratios to it.
"""

from __future__ import annotations

import falcon

BODY = {
    "scan_id": "scan_00000000000000000000000000000000",
    "status": "scanning",
    "progress": {
        "strategies_completed": 3,
        "total_strategies": 14,
        "percentage": 21.4,
        "opportunities_found_so_far": 12,
    },
    "created_at": "2026-01-01T00:00:00.000Z",
    "updated_at": "2026-01-01T00:00:01.000Z",
    "completed_at": None,
}


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = BODY


class Sized:
    """A constant JSON body of `size` bytes: the baseline of a large stored document
    (a finished scan's results), which oppscan also sends as stored bytes."""

    def __init__(self) -> None:
        self._bodies: dict[int, bytes] = {}

    def on_get(self, req: falcon.Request, resp: falcon.Response, size: int) -> None:
        body = self._bodies.get(size)
        if body is None:
            filler = max(0, size - len(b'{"filler":""}'))
            body = self._bodies[size] = b'{"filler":"' + b"x" * filler + b'"}'
        resp.content_type = falcon.MEDIA_JSON
        resp.data = body


app = falcon.App()
app.add_route("/hello", Hello())
app.add_route("/bytes/{size:int(min=1, max=10000000)}", Sized())
