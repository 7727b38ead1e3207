"""An httpx transport that remembers the status of every answer, for client tests."""

from __future__ import annotations

import httpx


class Recording(httpx.HTTPTransport):
    """The real transport, remembering each answer's status."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response
