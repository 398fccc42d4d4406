"""A tiny HTML builder that escapes by default: every `str` that reaches a page is text, never
markup, unless it is an `Html` built here. Table values hold user text (message bodies, names)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from urllib.parse import urlencode


class Html(str):
    """Markup that is safe to insert as is."""


AttrValue = str | int | float | bool | None


def esc(value: object) -> Html:
    return Html(html.escape(str(value), quote=True))


def _render(child: object) -> str:
    if child is None:
        return ""
    if isinstance(child, Html):
        return child
    if isinstance(child, str | int | float):
        return esc(child)
    if isinstance(child, Iterable):
        return "".join(_render(c) for c in child)
    raise TypeError(f"cannot render {type(child).__name__} as HTML")


def _attribute(name: str, value: AttrValue) -> str:
    name = name.rstrip("_").replace("_", "-")
    if value is None or value is False:
        return ""
    if value is True:
        return f" {name}"
    return f' {name}="{esc(value)}"'


VOID = frozenset({"meta", "link", "input", "br", "hr"})


def el(tag: str, *children: object, **attrs: AttrValue) -> Html:
    """`<tag attrs>children</tag>`; `class_` is `class`, `data_x` is `data-x`."""
    opening = tag + "".join(_attribute(k, v) for k, v in attrs.items())
    if tag in VOID:
        return Html(f"<{opening}>")
    return Html(f"<{opening}>{_render(children)}</{tag}>")


def wide_table(*children: object, **attrs: AttrValue) -> Html:
    """A table in a box that scrolls sideways, so that a wide one never widens the page (a phone)."""
    return el("div", el("table", *children, **attrs), class_="scroll")


def join(*children: object) -> Html:
    return Html(_render(children))


def link(path: str, params: dict[str, str | int | None] | None = None) -> str:
    """`path?query` with the parameters that are set (the caller's `el` escapes it)."""
    query = urlencode({k: v for k, v in (params or {}).items() if v is not None and v != ""})
    return f"{path}?{query}" if query else path
