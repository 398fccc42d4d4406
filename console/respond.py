"""How the console answers: HTML or JSON for the same data, and the headers every page carries."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""No script at all, styles from the worker only: a value holding markup can do nothing."""
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def wants_json(request: web.Request) -> bool:
    """`?format=json`, or an Accept header naming JSON and not HTML (a browser names HTML)."""
    chosen = request.query.get("format")
    if chosen in ("json", "html"):
        return chosen == "json"
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def html_response(body: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=body, status=status, content_type="text/html", charset="utf-8", headers={**PAGE_HEADERS, **(headers or {})}
    )


def json_response(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=model.model_dump_json().encode(),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def answer(request: web.Request, model: M, render: Callable[[M], str], status: int = 200) -> web.Response:
    """`model` as JSON, or the page `render` makes of it."""
    return json_response(model, status) if wants_json(request) else html_response(render(model), status)
