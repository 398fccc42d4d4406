"""`/docs`: the OpenAPI spec of the REST surface and a Swagger UI page to read and try it.

The spec files are the ones in the repository's `docs/` folder, served as they are (the YAML is
the source, `docs/swagger.json` is generated from it). Swagger UI's assets come from the
`swagger-ui-bundle` package and are served by the gateway itself under `/docs/static/`, so the
page works without any CDN. None of these routes asks for a token.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from gateway.errors import not_found

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"
ASSETS_DIR = Path(str(swagger_ui_path))
STATIC_PREFIX = "/docs/static"
SPEC_URL = "/docs/swagger.json"

SPEC_FILES = {
    "swagger.json": "application/json",
    "swagger.yaml": "application/yaml",
    "asyncapi.yaml": "application/yaml",
}
"""The files of `docs/` served under `/docs/`, with their media types."""

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Messenger API</title>
  <link rel="stylesheet" href="{STATIC_PREFIX}/swagger-ui.css">
  <link rel="icon" type="image/png" href="{STATIC_PREFIX}/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{STATIC_PREFIX}/swagger-ui-bundle.js"></script>
  <script src="{STATIC_PREFIX}/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({{
      url: "{SPEC_URL}",
      dom_id: "#swagger-ui",
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout"
    }});
  </script>
</body>
</html>
"""


async def swagger_ui(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


def spec_route(name: str, media_type: str) -> web.RouteDef:
    """A route answering `docs/<name>`, read at each request so an edited file shows at once."""

    async def handler(request: web.Request) -> web.Response:
        path = DOCS_DIR / name
        if not path.is_file():
            raise not_found(f"{name} is not installed with this gateway")
        return web.Response(body=path.read_bytes(), content_type=media_type, charset="utf-8")

    return web.get(f"/docs/{name}", handler)


ASSETS = frozenset(path.name for path in ASSETS_DIR.iterdir() if path.is_file())
"""The files of Swagger UI's distribution; only these names are served, so no path can escape."""


async def asset(request: web.Request) -> web.FileResponse:
    """One file of Swagger UI; an unknown name is the contract's enveloped 404."""
    name = request.match_info["name"]
    if name not in ASSETS:
        raise not_found("no such asset")
    return web.FileResponse(ASSETS_DIR / name)


routes: list[web.AbstractRouteDef] = [
    web.get("/docs", swagger_ui),
    *(spec_route(name, media_type) for name, media_type in SPEC_FILES.items()),
    web.get(STATIC_PREFIX + "/{name}", asset),
]
