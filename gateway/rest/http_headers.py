"""Security headers on every response of the gateway (issue 10, row 11).

They are added in aiohttp's `on_response_prepare` signal rather than in a middleware: a signal
sees every response the application sends, the ones a handler prepares itself (the WebSocket's
upgrade, a file) and the error envelopes of `gateway.rest.errors` included, while a middleware could
not add a header to a response that was already prepared.

- `X-Content-Type-Options: nosniff`: a JSON body is never run as a script or a page.
- `Referrer-Policy: no-referrer`: no URL of the gateway (a chat id in a path) leaks to elsewhere.
- `X-Frame-Options: DENY` and CSP `frame-ancestors 'none'`: no page of the gateway in a frame
  (clickjacking of Swagger UI's "Try it out").
- `Content-Security-Policy: default-src 'none'; frame-ancestors 'none'`: what a JSON answer
  rendered as a document may load (nothing). A handler that serves a page sets its own policy
  (`gateway.rest.docs.PAGE_CSP`), which this module leaves as it is.
- `Cache-Control: no-store`: no answer (tokens from login and refresh, profiles, messages) is kept
  by a browser or a proxy. A handler may set its own (Swagger UI's static files do).
- `Server: messenger`: not aiohttp's version (aiohttp only fills in `Server` when it is missing).

Errors that aiohttp answers before the application sees the request (a malformed request line)
carry none of these; they carry no data either.
"""

from __future__ import annotations

from aiohttp import web

FORCED: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Server": "messenger",
}
"""Set on every response, whatever the handler said."""

DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"

DEFAULTS: dict[str, str] = {
    "Content-Security-Policy": DEFAULT_CSP,
    "Cache-Control": "no-store",
}
"""Set on every response whose handler did not set them itself."""


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(FORCED)
    for name, value in DEFAULTS.items():
        response.headers.setdefault(name, value)


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(add_security_headers)
