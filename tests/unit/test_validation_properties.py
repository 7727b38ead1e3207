"""Property tests: no discover body, however odd, gets anything but a clear answer."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any, TypeVar

import falcon
import falcon.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from oppscan.http.errors import ApiError
from oppscan.http.validation import DiscoverBody, parse_discover, read_json_object
from oppscan.market import TIMEFRAMES

STRATEGIES = ("alpha", "beta", "gamma")
SYMBOLS = ("AAA", "BBB", "CCC", "DDD")
LIMIT = 1024

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)
bodies = st.dictionaries(
    st.sampled_from(["strategies", "symbols", "timeframe", "force_refresh", "other"]) | st.text(),
    json_values
    | st.lists(st.sampled_from(STRATEGIES + SYMBOLS), max_size=6)
    | st.sampled_from(TIMEFRAMES),
    max_size=5,
)


T = TypeVar("T")


def attempt(action: Callable[[], T]) -> T | ApiError:
    """The result, or the ApiError the action answered with."""
    try:
        return action()
    except ApiError as refused:
        return refused


@given(bodies)
@settings(max_examples=400)
def test_any_body_is_parsed_or_refused_with_a_400(body: dict[str, Any]) -> None:
    """A body either yields valid parameters or a 400 with a code and a detail."""
    parsed = attempt(lambda: parse_discover(body, STRATEGIES, SYMBOLS))
    if isinstance(parsed, ApiError):
        assert 400 == parsed.status_code
        assert parsed.title
        assert parsed.description
        return
    assert isinstance(parsed, DiscoverBody)
    assert parsed.params.strategies
    assert set(parsed.params.strategies) <= set(STRATEGIES)
    assert parsed.params.symbols
    assert set(parsed.params.symbols) <= set(SYMBOLS)
    assert parsed.params.timeframe in TIMEFRAMES
    assert isinstance(parsed.force_refresh, bool)


def request(raw: bytes, content_type: str | None = "application/json") -> falcon.Request:
    headers = {"Content-Type": content_type} if content_type else {}
    env = falcon.testing.create_environ(method="POST", body=raw, headers=headers)
    env["wsgi.input"] = io.BytesIO(raw)
    return falcon.Request(env)


@given(st.binary(max_size=2 * LIMIT))
@settings(max_examples=400)
def test_any_bytes_are_read_or_refused_clearly(raw: bytes) -> None:
    """Arbitrary bytes give a JSON object, or a 400 (bad JSON) or 413 (too large)."""
    body = attempt(lambda: read_json_object(request(raw), LIMIT))
    if isinstance(body, ApiError):
        assert body.status_code in (400, 413)
        return
    assert isinstance(body, dict)
    assert len(raw) <= LIMIT


@given(json_values)
def test_valid_json_that_is_not_an_object_is_refused(value: Any) -> None:
    """Only a JSON object is a body; other JSON values are a 400 invalid_body."""
    raw = json.dumps(value).encode()
    if isinstance(value, dict) or len(raw) > LIMIT:
        return
    refused = attempt(lambda: read_json_object(request(raw), LIMIT))
    assert isinstance(refused, ApiError)
    assert (400, "invalid_body") == (refused.status_code, refused.title)


@given(st.sampled_from(["1e999", "-1e999", "9" * 5000, "NaN", "Infinity", '"\\ud800"']))
def test_extreme_numbers_are_refused(literal: str) -> None:
    """Huge numbers, NaN and infinities never reach the service as values."""
    raw = ('{"timeframe": ' + literal + "}").encode()
    body = attempt(lambda: read_json_object(request(raw), 64 * 1024))
    if not isinstance(body, ApiError):
        body = attempt(lambda: parse_discover(body, STRATEGIES, SYMBOLS))  # type: ignore[arg-type]
    assert isinstance(body, ApiError)
    assert 400 == body.status_code
