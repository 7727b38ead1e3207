"""What a browser meets, through falcon's TestClient: `/docs` (Swagger UI from local
files), the tags and examples it shows, and CORS for the configured origins."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import falcon.testing
import pytest
from jsonschema import Draft202012Validator

from oppscan.auth import TokenVerifier, issue_token
from oppscan.http import create_app
from oppscan.http.docs import ASSETS
from oppscan.http.middleware import ALLOWED_HEADERS, EXPOSED_HEADERS
from oppscan.http.openapi import openapi_document
from tests.fakes import FakeStore, FakeStrategy, api_on_fakes

SECRET = "unit-test-secret-0123456789abcdef"
STRATEGIES = {s.name: s for s in (FakeStrategy("alpha"), FakeStrategy("beta"))}
SYMBOLS = ("SYM0", "SYM1")
ORIGIN = "https://app.example.com"
DISCOVER = "/api/v1/opportunities/discover"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

ClientFor = Callable[..., falcon.testing.TestClient]


@pytest.fixture
def client_for() -> Iterator[ClientFor]:
    """Builds the app on fakes, with the CORS origins a test gives."""
    with api_on_fakes(FakeStore(), STRATEGIES, lambda: SYMBOLS) as deps:

        def build(cors_origins: tuple[str, ...] = ()) -> falcon.testing.TestClient:
            app = create_app(deps, TokenVerifier.hmac([SECRET]), cors_origins)
            return falcon.testing.TestClient(app)

        yield build


@pytest.fixture
def client(client_for: ClientFor) -> falcon.testing.TestClient:
    return client_for((ORIGIN,))


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_token(SECRET, 'alice', 60)}"}


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }


def cors_headers(resp: falcon.testing.Result) -> dict[str, str]:
    return {k: v for k, v in resp.headers.items() if k.lower().startswith("access-control-")}


# -- /docs ------------------------------------------------------------------------------


def asset_urls(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_page_is_swagger_ui_on_the_document_without_a_token(
    client: falcon.testing.TestClient,
) -> None:
    """GET /docs needs no token and is an HTML page that runs Swagger UI on /openapi.json."""
    resp = client.simulate_get("/docs")
    assert (200, falcon.MEDIA_HTML) == (resp.status_code, resp.headers["Content-Type"])
    assert 'url: "/openapi.json"' in resp.text
    assert "SwaggerUIBundle(" in resp.text
    assert "validatorUrl: null" in resp.text  # no document sent to an online validator


def test_docs_page_loads_only_local_assets(client: falcon.testing.TestClient) -> None:
    """Every script, stylesheet and icon of /docs is served here: no CDN, no absolute URL."""
    html = client.simulate_get("/docs").text
    urls = asset_urls(html)
    assert [] == [url for url in urls if not url.startswith(f"{ASSETS}/")]
    assert [] == re.findall(r"https?://", html)
    assert {"swagger-ui-bundle.js", "swagger-ui.css"} <= {url.rsplit("/", 1)[1] for url in urls}
    assert [200] * len(urls) == [client.simulate_get(url).status_code for url in urls]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("favicon-32x32.png", "image/png"),
    ],
)
def test_assets_are_served_with_their_type_and_cached_for_good(
    client: falcon.testing.TestClient, name: str, content_type: str
) -> None:
    """An asset needs no token, has its content type, a year's immutable Cache-Control
    (its URL carries the wheel's version) and an ETag that answers 304."""
    resp = client.simulate_get(f"{ASSETS}/{name}")
    assert (200, content_type) == (resp.status_code, resp.headers["Content-Type"])
    assert "public, max-age=31536000, immutable" == resp.headers["Cache-Control"]
    assert resp.content
    again = client.simulate_get(f"{ASSETS}/{name}", headers={"If-None-Match": resp.headers["ETag"]})
    assert 304 == again.status_code


@pytest.mark.parametrize("path", ["nothing-here.js", "../../../../../../etc/passwd", "..%2f..%2fx"])
def test_nothing_outside_the_assets_is_served(client: falcon.testing.TestClient, path: str) -> None:
    """An unknown asset or a path out of the folder is a JSON 404."""
    resp = client.simulate_get(f"{ASSETS}/{path}")
    assert (404, "not_found") == (resp.status_code, resp.json["error"])


# -- The document's tags and examples -----------------------------------------------------


DOCUMENT: dict[str, Any] = json.loads(openapi_document(tuple(sorted(STRATEGIES)), SYMBOLS))


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolved(node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or what its `$ref` (`#/components/...`) points at."""
    ref = node.get("$ref")
    if ref is None:
        return node
    found: Any = DOCUMENT
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return dict(found)


def examples() -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(where, example, schema) for every example in the document."""
    for path, method, operation in operations():
        bodies = [("request", operation.get("requestBody", {}))]
        bodies += [(code, resolved(r)) for code, r in operation["responses"].items()]
        for code, body in bodies:
            for media, content in body.get("content", {}).items():
                if "example" in content:
                    yield f"{method} {path} {code} {media}", content["example"], content["schema"]


def test_every_operation_has_one_declared_tag() -> None:
    """Swagger UI groups operations by tag: each has one, and the document declares it."""
    declared = [tag["name"] for tag in DOCUMENT["tags"]]
    assert ["scans", "catalogue", "operations"] == declared
    tags = {f"{method} {path}": operation["tags"] for path, method, operation in operations()}
    assert {} == {op: t for op, t in tags.items() if len(t) != 1 or t[0] not in declared}


def test_every_example_matches_its_schema() -> None:
    """Every request and response example validates against the schema beside it."""
    components = DOCUMENT["components"]
    checked = []
    for where, example, schema in examples():
        validator = Draft202012Validator(
            {**schema, "components": components},
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        assert [] == [e.message for e in validator.iter_errors(example)], where
        checked.append(where.split(" ")[:3])
    assert ["post", DISCOVER, "request"] in checked
    assert ["post", DISCOVER, "202"] in checked
    assert len(checked) >= 15


def test_the_discover_example_starts_a_scan(client: falcon.testing.TestClient) -> None:
    """What "Try it out" sends for discover by default is a request the app accepts."""
    content = DOCUMENT["paths"][DISCOVER]["post"]["requestBody"]["content"]
    example = content["application/json"]["example"]
    assert {"strategies": ["alpha", "beta"], "symbols": ["SYM0", "SYM1"], "timeframe": "1h"} == (
        example
    )
    assert 202 == client.simulate_post(DISCOVER, json=example, headers=auth()).status_code


def test_the_document_offers_the_bearer_scheme_to_every_api_operation() -> None:
    """Swagger UI's Authorize takes a bearer token; public operations need none."""
    assert "bearer" == DOCUMENT["components"]["securitySchemes"]["bearer"]["scheme"]
    assert [{"bearer": []}] == DOCUMENT["security"]
    public = sorted(p for p, _, op in operations() if op.get("security") == [])
    assert ["/docs", "/healthz", "/metrics", "/openapi.json", "/readyz"] == public


# -- CORS -------------------------------------------------------------------------------------


def test_an_allowed_origin_may_read_the_answer_and_its_headers(
    client: falcon.testing.TestClient,
) -> None:
    """An allowed origin gets itself in Allow-Origin, Vary: Origin, and the exposed headers."""
    resp = client.simulate_post(
        DISCOVER, json={"strategies": ["alpha"]}, headers={**auth(), "Origin": ORIGIN}
    )
    assert (202, ORIGIN) == (resp.status_code, resp.headers["Access-Control-Allow-Origin"])
    assert "Origin" in resp.headers["Vary"]
    exposed = resp.headers["Access-Control-Expose-Headers"].split(", ")
    assert set(EXPOSED_HEADERS) == set(exposed)
    assert {"ETag", "Retry-After", "X-Served-By", "X-Scan-Source", "X-Request-ID", "Location"} == (
        set(exposed)
    )


def test_an_allowed_origin_may_read_an_error(client: falcon.testing.TestClient) -> None:
    """A 401 carries the CORS headers too, so a browser client sees why, not a network error."""
    resp = client.simulate_get("/api/v1/strategies", headers={"Origin": ORIGIN})
    assert (401, ORIGIN) == (resp.status_code, resp.headers["Access-Control-Allow-Origin"])


def test_a_preflight_from_an_allowed_origin_needs_no_token(
    client: falcon.testing.TestClient,
) -> None:
    """OPTIONS with Access-Control-Request-Method from an allowed origin is a 204, without a
    token, allowing the route's methods and the headers a client sends, for a while."""
    resp = client.simulate_options(DISCOVER, headers=preflight(ORIGIN))
    assert 204 == resp.status_code
    assert {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-methods": "POST",
        "access-control-allow-headers": ", ".join(ALLOWED_HEADERS),
        "access-control-max-age": "86400",
        "access-control-expose-headers": ", ".join(EXPOSED_HEADERS),
    } == {k.lower(): v for k, v in cors_headers(resp).items()}
    assert {"Authorization", "Content-Type", "If-None-Match"} <= set(ALLOWED_HEADERS)
    assert "Origin" in resp.headers["Vary"]
    assert "Allow" not in resp.headers
    scans = client.simulate_options("/api/v1/opportunities/scans/x", headers=preflight(ORIGIN))
    assert "DELETE" == scans.headers["Access-Control-Allow-Methods"]


def test_another_origin_gets_no_cors_headers(client: falcon.testing.TestClient) -> None:
    """A origin not configured gets no CORS headers, and its preflight is answered as any
    OPTIONS request without a token: 401."""
    other = "https://evil.example.com"
    resp = client.simulate_get("/api/v1/strategies", headers={**auth(), "Origin": other})
    assert (200, {}) == (resp.status_code, cors_headers(resp))
    asked = client.simulate_options(DISCOVER, headers=preflight(other))
    assert (401, {}) == (asked.status_code, cors_headers(asked))


def test_without_configured_origins_there_is_no_cors(client_for: ClientFor) -> None:
    """By default no origin is allowed: no CORS headers, no Vary, preflights are 401."""
    client = client_for()
    resp = client.simulate_get("/api/v1/strategies", headers={**auth(), "Origin": ORIGIN})
    assert (200, {}, None) == (resp.status_code, cors_headers(resp), resp.headers.get("Vary"))
    asked = client.simulate_options(DISCOVER, headers=preflight(ORIGIN))
    assert (401, {}) == (asked.status_code, cors_headers(asked))
