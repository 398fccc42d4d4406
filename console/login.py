"""The login page: a person types the operator token once and gets a session cookie
(`runtime.operator_auth.session_cookie_value`), since a browser cannot send a Bearer header.

The form's POST is refused unless its Origin (or, without one, its Referer) is this very worker:
with the cookie's SameSite=Strict, no other site can log a browser in or out.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from console.html import el, join
from console.layout import bare_page
from console.respond import html_response
from runtime.operator_auth import SESSION_COOKIE, SESSION_TTL_S, session_cookie_value, token_matches

HOME = "/console/tables"
NO_TOKEN = "This worker has no OPERATOR_TOKEN set: its console is closed to everyone until one is."


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a console path of this worker, never another site."""
    if not target or not target.startswith("/console/") or target.startswith("//") or "\\" in target:
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return HOME
    return target


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def same_origin(origin: str | None, referer: str | None, scheme: str, host: str) -> bool:
    """The request came from a page of `scheme://host` (Origin first, Referer when a browser sends no Origin)."""
    own = f"{scheme}://{host}".lower()
    if origin and origin != "null":
        return origin.lower().rstrip("/") == own
    return bool(referer) and origin_of(referer or "") == own


def request_is_same_origin(request: web.Request) -> bool:
    return same_origin(request.headers.get("Origin"), request.headers.get("Referer"), request.scheme, request.host)


def login_form(next_path: str, error: str = "") -> str:
    body = join(
        el("p", error, id="login-error", class_="error") if error else None,
        el(
            "form",
            el("label", "Operator token", for_="token"),
            el("input", type="password", name="token", id="token", autocomplete="current-password", required=True),
            el("input", type="hidden", name="next", value=next_path),
            el("button", "Log in", type="submit", id="login-submit"),
            method="post",
            action="/console/login",
            id="login-form",
        ),
        el("p", "The token is OPERATOR_TOKEN of the workers' settings (.env).", class_="hint"),
    )
    return bare_page("login", "Operator login", body)


async def show_login(request: web.Request) -> web.Response:
    return html_response(login_form(safe_next(request.query.get("next"))))


async def log_in(request: web.Request, token: str) -> web.Response:
    if not request_is_same_origin(request):
        return html_response(login_form(HOME, "This form was not sent from this worker's page."), status=403)
    form = await request.post()
    presented, target = form.get("token"), form.get("next")
    next_path = safe_next(target if isinstance(target, str) else None)
    if not token:
        return html_response(login_form(next_path, NO_TOKEN), status=401)
    if not isinstance(presented, str) or not token_matches(presented.strip(), token):
        return html_response(login_form(next_path, "Wrong token."), status=401)
    response = web.Response(status=303, headers={"Location": next_path, "Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE,
        session_cookie_value(token),
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


async def log_out(request: web.Request) -> web.Response:
    if not request_is_same_origin(request):
        return html_response(login_form(HOME, "This form was not sent from this worker's page."), status=403)
    response = web.Response(status=303, headers={"Location": "/console/login", "Cache-Control": "no-store"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response
