"""`/docs`: Swagger UI on `/openapi.json`, its files served from the swagger-ui-py wheel.

Nothing comes from a CDN: the page loads its script and stylesheet from
`ASSETS`, a static route on the wheel's folder. That prefix carries the wheel's
version, so the assets can be cached for good and an upgrade changes their URLs.
`swagger-ui-bundle` was not used: its latest release ships swagger-ui 4, which
cannot render an OpenAPI 3.1 document.
"""

from __future__ import annotations

import re
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import falcon
from falcon.routing import StaticRoute

_WHEEL = distribution("swagger-ui-py")  # located without importing it (it pulls in jinja2, yaml)
ASSET_DIR = Path(str(_WHEEL.locate_file("swagger_ui/static")))
ASSETS = f"/docs/assets/{_WHEEL.version}"
ASSET_CACHE = ("public", "max-age=31536000", "immutable")  # versioned URLs never change

# `validatorUrl: null`: Swagger UI would otherwise send the document to an online validator.
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>oppscan API</title>
<link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: "{document}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  displayRequestDuration: true,
  validatorUrl: null
}});
</script>
</body>
</html>
"""


class Page:
    """The Swagger UI page: small, so revalidated on every load."""

    auth_required = False

    def __init__(self, document: str = "/openapi.json") -> None:
        self._html = PAGE.format(assets=ASSETS, document=document).encode()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_HTML
        resp.cache_control = ["no-cache"]
        resp.data = self._html


class Assets(StaticRoute):
    """Swagger UI's files: Falcon's static route (content type, `ETag`, `Last-Modified`,
    no path outside the folder) plus `Cache-Control`.

    `App.add_static_route` takes no route object, so the app mounts this one as a
    sink (`add_sink(Assets(), Assets.PREFIX)`). Like a static route, a sink gets
    no `process_resource`: no token is asked for.
    """

    PREFIX = re.compile(re.escape(ASSETS) + "/")

    def __init__(self) -> None:
        super().__init__(ASSETS, ASSET_DIR)

    def __call__(self, req: falcon.Request, resp: falcon.Response, **kw: Any) -> None:
        super().__call__(req, resp, **kw)
        resp.cache_control = list(ASSET_CACHE)
