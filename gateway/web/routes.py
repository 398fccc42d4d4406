"""`/` and `/app/<file>`: the web client (plain ES modules, CSS and one HTML page) served as static
files from `gateway/web/static/`, so that `make run` gives a person a messenger to open.

Only the files found under `static/` when the gateway starts are served, looked up by their exact
relative path: no request path (`/app/../config/settings.py`, an encoded `%2e%2e`, a symlink) can
reach a file outside that folder. An unknown one is the contract's enveloped 404.

The page's Content-Security-Policy (`page_csp`) allows scripts, styles, images and connections
from the gateway's own origin only (plus the WebSocket scheme of that origin), no inline code or
style, no `eval`, no frames, no `<base>` and no form submission (forms are handled by script).
`gateway.rest.http_headers` keeps a policy a handler set; every other file gets its default
(`default-src 'none'`), which is right for a script or a stylesheet.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from gateway.rest.errors import not_found

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/app"
INDEX = "index.html"
CACHE_CONTROL = "no-cache"
"""The browser may keep the files but revalidates them (ETag / Last-Modified) each time: an upgraded
gateway's client shows at once."""

MEDIA_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
"""The kinds of file the client is made of; other files in the folder are not served."""

HOST = re.compile(r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
"""A `Host` header that may be written into the policy as it is (no `;`, space or quote)."""


def static_files(folder: Path = STATIC_DIR) -> dict[str, Path]:
    """Every servable file under `folder` by its relative POSIX path; symlinks are left out."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink() and path.suffix in MEDIA_TYPES
    }


FILES = static_files()


def page_csp(host: str | None) -> str:
    """The page's policy. Chromium's `'self'` covers `ws:`/`wss:` of the same host, other browsers'
    may not: the WebSocket origin is named too when the request's `Host` is well formed."""
    sockets = f" ws://{host} wss://{host}" if host and HOST.match(host) else ""
    return "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src 'self'{sockets}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )


def file_response(name: str, headers: dict[str, str] | None = None) -> web.FileResponse:
    path = FILES.get(name)
    if path is None:
        raise not_found("no such file")
    return web.FileResponse(
        path,
        headers={
            "Cache-Control": CACHE_CONTROL,
            "Content-Type": f"{MEDIA_TYPES[path.suffix]}; charset=utf-8"
            if path.suffix in (".html", ".js", ".css", ".svg")
            else MEDIA_TYPES[path.suffix],
            **(headers or {}),
        },
    )


async def index(request: web.Request) -> web.FileResponse:
    return file_response(INDEX, {"Content-Security-Policy": page_csp(request.host)})


async def static_file(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name == INDEX:
        return await index(request)
    return file_response(name)


routes: list[web.AbstractRouteDef] = [
    web.get("/", index),
    web.get(PREFIX + "/{name:.+}", static_file),
]
"""`web.get` answers HEAD too; other methods are the gateway's 405."""
