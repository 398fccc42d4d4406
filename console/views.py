"""Faust views from plain aiohttp handlers: the console's handlers stay testable without an app."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust
from aiohttp import web
from faust.web import View

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_view(app: faust.App, path: str, name: str, get: Handler | None = None, post: Handler | None = None) -> None:
    """`app.page(path)` of a view answering GET with `get` and POST with `post` (only those)."""
    namespace: dict[str, Any] = {"__doc__": f"The console's {path}"}
    if get is not None:
        handle_get = get

        async def view_get(self: View, request: Any, **kwargs: Any) -> web.StreamResponse:
            return await handle_get(cast(web.Request, request))

        namespace["get"] = view_get
    if post is not None:
        handle_post = post

        async def view_post(self: View, request: Any, **kwargs: Any) -> web.StreamResponse:
            return await handle_post(cast(web.Request, request))

        namespace["post"] = view_post
    app.page(path, name=name)(type(name, (View,), namespace))
