"""The frame of every console page: head, navigation, who served it."""

from __future__ import annotations

from console.html import Html, el, join

STYLE_SHEET = "/console/static/console.css"
ICON = "/console/static/icon.svg"
"""Named by every page, so that a browser does not ask for `/favicon.ico` (a 401 in its console)."""
NAV = (
    ("tables", "/console/tables", "Tables"),
    ("topics", "/console/topics", "Topics and lag"),
    ("bad-records", "/console/bad-records", "Bad records"),
    ("rebuild", "/console/rebuild", "Rebuild"),
)


def navigation(current: str) -> Html:
    links = [
        el("a", label, href=path, id=f"nav-{name}", class_="current" if name == current else None)
        for name, path, label in NAV
    ]
    logout = el(
        "form",
        el("button", "Log out", type="submit", id="logout"),
        method="post",
        action="/console/logout",
        id="logout-form",
    )
    return el("nav", *links, logout, id="console-nav")


def document_head(title: str, refresh_s: int | None = None) -> Html:
    return el(
        "head",
        el("meta", charset="utf-8"),
        el("meta", name="viewport", content="width=device-width, initial-scale=1"),
        el("meta", http_equiv="refresh", content=str(refresh_s)) if refresh_s else None,
        el("title", f"{title} · messenger console"),
        el("link", rel="stylesheet", href=STYLE_SHEET),
        el("link", rel="icon", href=ICON, type="image/svg+xml"),
    )


def page(name: str, title: str, body: object, served_by: str, refresh_s: int | None = None) -> str:
    """A whole document; `refresh_s` reloads it that often (no script: the policy forbids any)."""
    main = el(
        "main",
        el("h1", title),
        body,
        el("p", "Served by ", el("code", served_by), id="served-by"),
        id="console",
        data_page=name,
    )
    return "<!doctype html>" + el(
        "html", document_head(title, refresh_s), el("body", navigation(name), main), lang="en"
    )


def bare_page(name: str, title: str, body: object) -> str:
    """A page without the navigation (the login page)."""
    main = el("main", el("h1", title), body, id="console", data_page=name)
    return "<!doctype html>" + el("html", document_head(title), el("body", main), lang="en")


def section(title: str, *children: object, **attrs: str) -> Html:
    return el("section", el("h2", title), join(*children), **attrs)
