"""A typed Python client of the oppscan API.

    with Client("http://127.0.0.1:8000", token) as client:
        scan = client.discover(strategies=["momentum"], timeframe="1h")
        results = scan.wait(on_progress=lambda s: print(s.completed, "/", s.total))

Answers the service asks a client to wait for (`429`, `503`, with `Retry-After`)
are retried after that wait, a bounded number of times; every other error is
raised as the matching `ApiError`. Polls are conditional: a scan remembers the
`ETag` of its last answer, and an unchanged state comes back as a bodiless `304`.

Errors::

    OppscanError
    ├── ServiceUnreachable          no answer at all (connection refused, timeout)
    └── ApiError                    an error answer: status, code, detail
        ├── BadRequest              400: the request is wrong; `detail` says how
        ├── Unauthorized            401: no token, or an invalid or expired one
        ├── NotFound                404: no such scan for this user
        ├── Conflict                409: the scan already finished
        ├── RateLimited             429: `retry_after` seconds, retries used up
        └── Unavailable             503: store or worker busy; `retry_after`
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import httpx

API = "/api/v1"
RETRY_STATUSES = frozenset({429, 503})
TERMINAL = frozenset({"complete", "failed", "cancelled"})


class OppscanError(Exception):
    """Anything that stopped a call from getting its answer."""


class ServiceUnreachable(OppscanError):
    """The service gave no answer (refused, reset, timed out)."""


class ApiError(OppscanError):
    """The service answered with an error."""

    def __init__(
        self, status: int, code: str, detail: str, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class RateLimited(ApiError):
    pass


class Unavailable(ApiError):
    pass


ERRORS: Mapping[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    503: Unavailable,
}


@dataclass(frozen=True)
class ScanState:
    """A scan's status as the service last told it."""

    scan_id: str
    status: str
    completed: int
    total: int
    found: int
    created_at: str
    updated_at: str
    completed_at: str | None = None
    error: str | None = None
    retry_after: float | None = None  # the service's suggested wait before the next poll
    # Each strategy's state: pending, running, ok, error, skipped, or cancelled.
    strategies: Mapping[str, str] = field(default_factory=dict, hash=False)
    body: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)  # as sent

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def in_state(self, state: str) -> list[str]:
        """The strategies in `state` (`running`, say), by name."""
        return sorted(name for name, now in self.strategies.items() if now == state)

    @classmethod
    def from_body(cls, body: Mapping[str, Any], retry_after: float | None) -> ScanState:
        progress = body["progress"]
        return cls(
            scan_id=body["scan_id"],
            status=body["status"],
            completed=progress["strategies_completed"],
            total=progress["total_strategies"],
            found=progress["opportunities_found_so_far"],
            created_at=body["created_at"],
            updated_at=body["updated_at"],
            completed_at=body.get("completed_at"),
            error=body.get("error"),
            retry_after=retry_after,
            strategies=dict(body.get("strategies", {})),
            body=dict(body),
        )


@dataclass(frozen=True)
class Results:
    """A scan's results document (`body` whole, the common parts named): a finished
    scan's, or a running one's so far (`partial`)."""

    body: Mapping[str, Any]

    @property
    def status(self) -> str:
        return str(self.body["status"])

    @property
    def partial(self) -> bool:
        return self.status not in TERMINAL

    @property
    def opportunities(self) -> Sequence[Mapping[str, Any]]:
        """Ranked and capped; so far, while it runs (none when the store could not say)."""
        found: Sequence[Mapping[str, Any]] = self.body.get("opportunities", ())
        return found

    @property
    def error(self) -> str | None:
        return self.body.get("error")


@dataclass(frozen=True)
class Answer:
    """One HTTP answer, as the client saw it."""

    status: int
    body: Any  # parsed JSON; None when there was none
    etag: str | None
    retry_after: float | None
    worker: str | None  # X-Served-By
    source: str | None = None  # X-Scan-Source
    content: bytes = b""


@dataclass
class Client:
    """The API at `url` for the user `token` belongs to.

    `spread=True` opens a new connection per request, so that requests spread
    over a server's workers as many clients' would (the load test wants that);
    by default connections are kept alive.
    """

    url: str
    token: str | None = None
    timeout: float = 10.0
    retries: int = 5  # waits honoured per call on 429/503
    max_wait: float = 30.0  # the longest single Retry-After honoured
    spread: bool = False
    transport: httpx.BaseTransport | None = None
    sleep: Callable[[float], None] = time.sleep
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.spread:
            headers["Connection"] = "close"
        # Spread: a connection per request, as many at once as the callers make.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        self._http = httpx.Client(
            base_url=self.url.rstrip("/"),
            headers=headers,
            timeout=self.timeout,
            transport=self.transport,
            limits=limits if self.spread else httpx.Limits(),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- the API -------------------------------------------------------------

    def discover(
        self,
        strategies: Sequence[str] | None = None,
        symbols: Sequence[str] | None = None,
        timeframe: str | None = None,
        force_refresh: bool = False,
    ) -> Scan:
        """Start a scan (or join an identical running one, or reuse a finished one)."""
        body: dict[str, Any] = {}
        if strategies is not None:
            body["strategies"] = list(strategies)
        if symbols is not None:
            body["symbols"] = list(symbols)
        if timeframe is not None:
            body["timeframe"] = timeframe
        if force_refresh:
            body["force_refresh"] = True
        answer = self.request("POST", f"{API}/opportunities/discover", json=body)
        return Scan(self, answer.body["scan_id"], answer.body)

    def scan(self, scan_id: str) -> Scan:
        """A handle on a scan started earlier (nothing is asked until it is used)."""
        return Scan(self, scan_id, {})

    def scans(self, limit: int = 50) -> list[ScanState]:
        """The caller's retained scans, newest first."""
        answer = self.request("GET", f"{API}/opportunities/scans", params={"limit": limit})
        return [ScanState.from_body(s, None) for s in answer.body["scans"]]

    def strategies(self) -> dict[str, str]:
        """Installed strategies: name to description."""
        answer = self.request("GET", f"{API}/strategies")
        return {s["name"]: s["description"] for s in answer.body["strategies"]}

    def symbols(self) -> list[str]:
        return list(self.request("GET", f"{API}/symbols").body["symbols"])

    # -- HTTP ----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        etag: str | None = None,
        deadline: float | None = None,
    ) -> Answer:
        """One call; a 429 or 503 is retried after its Retry-After, `retries` times.

        A wait longer than `max_wait`, or past `deadline` (time.monotonic()), is not
        waited: the error is raised at once, with its `retry_after`. A 304 (the
        `etag` sent is current) comes back as an Answer with no body.
        """
        headers = {"If-None-Match": etag} if etag else {}
        for attempt in range(self.retries + 1):
            answer = self.send(method, path, json=json, params=params, headers=headers)
            if answer.status < 400 or answer.status == 304:
                return answer
            pause = answer.retry_after or 1.0
            late = deadline is not None and time.monotonic() + pause > deadline
            if answer.status not in RETRY_STATUSES or attempt == self.retries:
                raise _error(answer)
            if pause > self.max_wait or late:
                raise _error(answer)
            self.sleep(pause)
        raise AssertionError("unreachable")

    def send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """One request and its answer as it came, error statuses included (no retry);
        only no answer at all raises (ServiceUnreachable). For tools that observe the
        service (load tests, fault tests) rather than use it."""
        try:
            response = self._http.request(
                method, path, json=json, params=params, headers=headers or {}
            )
        except httpx.TransportError as exc:
            raise ServiceUnreachable(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        return Answer(
            response.status_code,
            _json(response),
            response.headers.get("ETag"),  # as sent (quoted, maybe weak): sent back so
            _seconds(response.headers.get("Retry-After")),
            response.headers.get("X-Served-By"),
            response.headers.get("X-Scan-Source"),
            response.content,
        )


class Scan:
    """One scan: poll it, wait for it, read its results, cancel it.

    It keeps the last status and results it saw with their entity tags, so
    polling an unchanged scan costs a bodiless `304`.
    """

    def __init__(self, client: Client, scan_id: str, first: Mapping[str, Any]) -> None:
        self.client = client
        self.scan_id = scan_id
        self.first = dict(first)  # discover's answer (deduplicated, cached...)
        self._state: ScanState | None = None
        self._state_tag: str | None = None
        self._results: Results | None = None
        self._results_tag: str | None = None

    def __repr__(self) -> str:
        return f"Scan({self.scan_id!r})"

    def status(self, deadline: float | None = None) -> ScanState:
        """The scan's status now (a 304 when unchanged since the last one); waits for
        a 429 or 503 only until `deadline` (time.monotonic())."""
        path = f"{API}/opportunities/status/{self.scan_id}"
        answer = self.client.request("GET", path, etag=self._state_tag, deadline=deadline)
        if answer.status == 304 and self._state is not None:
            self._state = _with_retry_after(self._state, answer.retry_after)
        else:
            self._state = ScanState.from_body(answer.body, answer.retry_after)
        self._state_tag = answer.etag
        return self._state

    def results(self) -> Results:
        """The results: final once it finished (also `failed` and `cancelled`), else
        what it found so far (`partial`)."""
        if self._results is not None and not self._results.partial:
            return self._results  # a finished scan never changes
        path = f"{API}/opportunities/results/{self.scan_id}"
        answer = self.client.request("GET", path, etag=self._results_tag)
        if answer.status != 304 or self._results is None:
            self._results = Results(answer.body)
        self._results_tag = answer.etag
        return self._results

    def wait(
        self,
        on_progress: Callable[[ScanState], object] | None = None,
        timeout: float | None = None,
        interval: float | None = None,
    ) -> Results:
        """Poll until the scan finishes, then its results.

        Polls at the pace the service suggests (`Retry-After`, 1-5 s) unless
        `interval` is given. `on_progress` hears each state that differs from
        the last one. A store outage meanwhile (`503`) is waited out, within
        `timeout` (None: no limit); past it, TimeoutError.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        last: ScanState | None = None
        while True:
            try:
                state = self.status(deadline)
            except Unavailable as exc:  # the store is down: ride it out
                pause = min(self.client.max_wait, exc.retry_after or 1.0)
            else:
                if on_progress is not None and _changed(last, state):
                    on_progress(state)
                last = state
                if state.finished:
                    return self.results()
                pause = interval if interval is not None else (state.retry_after or 1.0)
            if deadline is not None and time.monotonic() + pause > deadline:
                raise TimeoutError(f"{self.scan_id} not finished within {timeout:g} s")
            self.client.sleep(pause)

    def cancel(self) -> ScanState:
        answer = self.client.request("DELETE", f"{API}/opportunities/scans/{self.scan_id}")
        self._state = ScanState.from_body(answer.body, answer.retry_after)
        return self._state


def _changed(last: ScanState | None, now: ScanState) -> bool:
    if last is None:
        return True
    return (last.status, last.completed, last.found) != (now.status, now.completed, now.found)


def _with_retry_after(state: ScanState, retry_after: float | None) -> ScanState:
    return replace(state, retry_after=retry_after)


def _error(answer: Answer) -> ApiError:
    body = answer.body if isinstance(answer.body, Mapping) else {}
    code = str(body.get("error", "error"))
    detail = str(body.get("detail", ""))
    kind = ERRORS.get(answer.status, ApiError)
    return kind(answer.status, code, detail, answer.retry_after)


def _json(response: httpx.Response) -> Any:
    if not response.content or not response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
