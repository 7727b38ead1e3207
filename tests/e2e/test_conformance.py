"""Schemathesis against a live gunicorn: `/openapi.json` says exactly what the app does.

Every operation is fuzzed with every built-in check (positive and negative
data; examples, coverage and fuzzing phases; auth probes; 405 probes) against
real gunicorn workers on a real Redis, then a stateful run follows the
document's links: discover → status, results, cancel. Examples are bounded and
derandomized, so a run is reproducible and takes seconds. Run with `-s` to see
the figures.

The document is built here, at import, so that pytest lists one test per
operation (`schemathesis.pytest.from_fixture` fails on pytest 9.2: it sets
`Function._nodeid`, which pytest 9.2 no longer has); the first test asserts
that the live server serves this very document.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import redis
import requests
import schemathesis
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis import Case
from schemathesis.config import SchemathesisConfig

from oppscan.auth import issue_token
from oppscan.http.openapi import openapi_document
from oppscan.market import SyntheticMarket
from oppscan.storage import EmbeddedRedis
from oppscan.strategies import available_strategies
from tests.support.server import SECRET, GunicornServer

EXAMPLES = 30  # per operation, in the fuzzing phase
SCENARIOS = 25  # stateful scenarios
STEPS = 6  # calls per scenario, at most
# Fuzzing must not trip the abuse limits, and scans should finish at once.
SERVER_ENV = {
    "OPPSCAN_DISCOVER_RATE_PER_MINUTE": "0",
    "OPPSCAN_MAX_ACTIVE_SCANS_PER_USER": "100000",
    "OPPSCAN_SYNTHETIC_LATENCY_MS": "0",
}
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
# The server's names (synthetic market, installed strategies), which its document enumerates.
NAMES = (tuple(sorted(available_strategies())), tuple(SyntheticMarket().symbols()))
DOCUMENT = json.loads(openapi_document(*NAMES))
CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 20240601,
        # Declared as the document's bearer scheme, so that the auth checks also
        # send requests without it and with a wrong one, and expect 401.
        "auth": {"openapi": {"bearer": {"bearer": issue_token(SECRET, "fuzzer", 3600)}}},
        "request-timeout": 10,
    }
)

schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@dataclass
class Tally:
    """What the run did, printed in one line when the module is done."""

    cases: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    failures: int = 0

    @contextmanager
    def counting_failures(self) -> Iterator[None]:
        """Count and print a failure as it happens, before Hypothesis replays it."""
        try:
            yield
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is the latter
            self.failures += 1
            print(f"\nconformance failure:\n{exc}")
            raise


@pytest.fixture(scope="module")
def tally() -> Iterator[Tally]:
    figures = Tally()
    yield figures
    print(
        f"\nconformance: {len(figures.cases)} operations fuzzed, "
        f"{sum(figures.cases.values())} cases, {figures.steps} stateful steps, "
        f"{figures.failures} failures"
    )


@pytest.fixture(scope="module")
def live(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GunicornServer]:
    """gunicorn with 3 workers on the session's Redis, flushed first."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    directory = tmp_path_factory.mktemp("conformance")
    server = GunicornServer(redis_server.url, directory, workers=3, env=SERVER_ENV).start()
    yield server
    server.stop()


def test_the_live_server_serves_this_document(live: GunicornServer) -> None:
    """What is fuzzed here is what `/openapi.json` serves."""
    assert DOCUMENT == requests.get(f"{live.url}/openapi.json", timeout=10).json()


@schema.parametrize()
@SETTINGS
def test_every_operation_conforms(case: Case[Any], live: GunicornServer, tally: Tally) -> None:
    """Every generated request gets a documented status, headers and body, and no 5xx."""
    tally.cases[case.operation.label] += 1
    with tally.counting_failures():
        case.call_and_validate(base_url=live.url)


def test_linked_operations_conform(live: GunicornServer, tally: Tally) -> None:
    """Following discover's links (status, results, cancel) never breaks the document."""

    class Linked(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"base_url": live.url}

        def validate_response(
            self, response: Any, case: Case[Any], *args: Any, **kwargs: Any
        ) -> None:
            tally.steps += 1
            with tally.counting_failures():
                super().validate_response(response, case, *args, **kwargs)

    failed_before = tally.failures
    # No shrinking: which links can be followed depends on the server's answers
    # (a scan still running or finished), so a replay may not draw the same steps.
    phases = [hypothesis.Phase.explicit, hypothesis.Phase.generate]
    settings = hypothesis.settings(
        SETTINGS, max_examples=SCENARIOS, stateful_step_count=STEPS, phases=phases
    )
    # Hypothesis may fail to replay a choice it forced, for the same reason;
    # every step was checked as it ran, and any failure is counted.
    with suppress(FlakyStrategyDefinition):
        Linked.run(settings=settings)
    assert (0, True) == (tally.failures - failed_before, tally.steps > 0)
