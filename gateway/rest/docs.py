"""`/docs`: the OpenAPI spec of the REST surface and a Swagger UI page to read and try it.

The spec files and the public contract (`docs/contract.md`, which the specs' descriptions name)
are the ones in the repository's `docs/` folder, served as they are (the YAML is the source,
`docs/swagger.json` is generated from it), so a client of a running gateway needs no clone.
Swagger UI's assets come from the `swagger-ui-bundle` package and are served by the gateway
itself under `/docs/static/`, so the page works without any CDN. None of these routes asks for a token.

The page holds no inline script or style (the code that starts Swagger UI is `/docs/swagger-init.js`),
so its Content-Security-Policy (`PAGE_CSP`) allows nothing but the gateway's own origin, plus
`data:` images, which `swagger-ui.css` embeds for its icons.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from gateway.rest.errors import not_found

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
ASSETS_DIR = Path(str(swagger_ui_path))
STATIC_PREFIX = "/docs/static"
SPEC_URL = "/docs/swagger.json"
INIT_URL = "/docs/swagger-init.js"

SPEC_FILES = {
    "swagger.json": "application/json",
    "swagger.yaml": "application/yaml",
    "asyncapi.yaml": "application/yaml",
    "contract.md": "text/markdown",
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
  <script src="{INIT_URL}"></script>
</body>
</html>
"""

INIT_SCRIPT = f"""window.ui = SwaggerUIBundle({{
  url: "{SPEC_URL}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
  layout: "StandaloneLayout"
}});
"""
"""Starts Swagger UI. `validatorUrl: null`: no badge image fetched from swagger.io's validator,
which would send the spec's address elsewhere (and be refused by `PAGE_CSP`)."""

PAGE_CSP = "; ".join(
    (
        "default-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""Scripts, styles, the spec and "Try it out" requests: the gateway's own origin only. Swagger UI
sets element styles through the DOM (not blocked by a policy) and needs no `eval`."""

ASSET_CACHE_CONTROL = "no-cache"
"""Swagger UI's files may be kept by a browser, revalidated (ETag) so an upgrade shows at once."""


async def swagger_ui(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html", headers={"Content-Security-Policy": PAGE_CSP})


async def swagger_init(request: web.Request) -> web.Response:
    return web.Response(text=INIT_SCRIPT, content_type="text/javascript")


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
    return web.FileResponse(ASSETS_DIR / name, headers={"Cache-Control": ASSET_CACHE_CONTROL})


routes: list[web.AbstractRouteDef] = [
    web.get("/docs", swagger_ui),
    web.get(INIT_URL, swagger_init),
    *(spec_route(name, media_type) for name, media_type in SPEC_FILES.items()),
    web.get(STATIC_PREFIX + "/{name}", asset),
]
