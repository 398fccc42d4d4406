"""The HTML of the sections other parts feed: bad records (dead letters) and rebuild progress."""

from __future__ import annotations

from console.html import el
from console.layout import page
from schemas.console import Unavailable


def render_unavailable(name: str, title: str, reason: Unavailable, served_by: str) -> str:
    body = el("p", reason.reason, id=f"{name}-unavailable", class_="unavailable")
    return page(name, title, body, served_by)
