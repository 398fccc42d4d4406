"""The console's pages on a worker's Faust web server (`register`): each merges what every worker
of the app holds, asking the others through the internal views registered here as well."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import faust
from aiohttp import web

from config.settings import WorkerSettings
from console import local, login, merge, offsets, peers, sections
from console.html import el
from console.layout import page
from console.render_extras import render_bad_records, render_rebuild
from console.render_tables import render_keys, render_tables, render_value
from console.render_topics import render_topics
from console.respond import answer, html_response, json_response, wants_json
from console.views import add_view
from schemas.console import (
    KEYS_LIMIT_DEFAULT,
    KEYS_LIMIT_MAX,
    LocalKeys,
    LocalTables,
    LocalValue,
    TablesPage,
    TopicsPage,
)

STATIC_DIR = Path(__file__).with_name("static")
STATIC = {"console.css": "text/css", "icon.svg": "image/svg+xml"}
"""The files `/console/static/<file>` serves: these, no path of the request's making."""
INTERNAL = "/console/internal/tables"


class BadRequest(Exception):
    pass


def keys_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return KEYS_LIMIT_DEFAULT
    if not raw.isdigit() or not 1 <= int(raw) <= KEYS_LIMIT_MAX:
        raise BadRequest(f"limit must be a whole number from 1 to {KEYS_LIMIT_MAX}")
    return int(raw)


def keys_query(request: web.Request) -> tuple[str, str | None, int]:
    """(prefix, after, limit) of `?prefix=&after=&limit=`; an empty `after` is the start."""
    return request.query.get("prefix", ""), request.query.get("after") or None, keys_limit(request.query.get("limit"))


ERROR_CODES = {400: "bad_request", 404: "not_found", 503: "unavailable"}


def problem(request: web.Request, status: int, message: str, served_by: str) -> web.Response:
    """An error as the contract's envelope (JSON) or as a page saying it."""
    if wants_json(request):
        return web.json_response({"error": {"code": ERROR_CODES[status], "message": message}}, status=status)
    return html_response(page("error", "Cannot show this", el("p", message, id="error"), served_by), status=status)


class Console:
    def __init__(self, app: faust.App, settings: WorkerSettings) -> None:
        self.app = app
        self.settings = settings
        self.token = settings.operator_token

    @property
    def me(self) -> str:
        return local.worker_url(self.app)

    def table(self, name: str) -> Any:
        return self.app.tables.get(name)

    # --- internal views: this worker's share -------------------------------------------------------

    async def internal_tables(self, request: web.Request) -> web.Response:
        return json_response(local.local_tables(self.app))

    async def internal_keys(self, request: web.Request) -> web.Response:
        table = self.table(request.match_info["name"])
        if table is None:
            return problem(request, 404, "no such table", self.me)
        try:
            prefix, after, limit = keys_query(request)
        except BadRequest as error:
            return problem(request, 400, str(error), self.me)
        return json_response(local.local_keys(self.app, table, prefix, after, limit))

    async def internal_value(self, request: web.Request) -> web.Response:
        table = self.table(request.match_info["name"])
        if table is None:
            return problem(request, 404, "no such table", self.me)
        return json_response(local.local_value(self.app, table, request.query.get("key", "")))

    # --- pages ----------------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(status=303, headers={"Location": "/console/tables"})

    async def tables(self, request: web.Request) -> web.Response:
        return answer(request, await self.tables_page(), render_tables)

    async def tables_page(self) -> TablesPage:
        async def here() -> LocalTables:
            return local.local_tables(self.app)

        workers, answers, errors = await peers.ask_all(self.app, self.token, INTERNAL, {}, LocalTables, here)
        statuses = merge.statuses(workers, errors, self.me)
        if not self.app.tables:
            note = (
                f"This worker's app ({self.app.conf.id}) has no Faust tables: they live in the streams workers. "
                "Its other pages work."
            )
            return TablesPage(
                app=self.app.conf.id, served_by=self.me, has_tables=False, note=note, workers=statuses, tables=[]
            )
        specs = [
            merge.TableSpec(name, t.help or "", local.changelog_of(t), t.partitions or self.settings.topic_partitions)
            for name, t in sorted(self.app.tables.items())
        ]
        try:
            ends = await offsets.end_offsets(self.settings, [s.changelog_topic for s in specs])
        except Exception:  # the counts still show; the offsets read as unknown
            ends = {}
        distribution = local.changelog_distribution(self.app)
        return TablesPage(
            app=self.app.conf.id,
            served_by=self.me,
            has_tables=True,
            rebalancing=bool(self.app.rebalancing),
            workers=statuses,
            tables=[merge.merge_table(s, distribution, answers, ends.get(s.changelog_topic, {})) for s in specs],
        )

    async def keys(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        table = self.table(name)
        if table is None:
            return problem(request, 404, f"no table {name} on this worker's app", self.me)
        try:
            prefix, after, limit = keys_query(request)
        except BadRequest as error:
            return problem(request, 400, str(error), self.me)

        async def here() -> LocalKeys:
            return local.local_keys(self.app, table, prefix, after, limit)

        params = {"prefix": prefix, "after": after or "", "limit": str(limit)}
        path = f"{INTERNAL}/{name}/keys"
        workers, answers, errors = await peers.ask_all(self.app, self.token, path, params, LocalKeys, here)
        view = merge.merge_keys(name, prefix, after, limit, answers, merge.statuses(workers, errors, self.me))
        return answer(request, view, partial(render_keys, served_by=self.me))

    async def value(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        table, key = self.table(name), request.query.get("key")
        if table is None:
            return problem(request, 404, f"no table {name} on this worker's app", self.me)
        if key is None:
            return problem(request, 400, "key is missing (?key=)", self.me)

        async def here() -> LocalValue:
            return local.local_value(self.app, table, key)

        path = f"{INTERNAL}/{name}/value"
        workers, answers, errors = await peers.ask_all(self.app, self.token, path, {"key": key}, LocalValue, here)
        view = merge.pick_value(name, key, answers, merge.statuses(workers, errors, self.me))
        return answer(request, view, partial(render_value, served_by=self.me), status=200 if view.found else 404)

    async def topics(self, request: web.Request) -> web.Response:
        try:
            groups, topics = await offsets.read_topics(self.settings)
        except Exception as failure:  # Kafka cannot be reached: say so
            return problem(request, 503, f"cannot read the topics: {type(failure).__name__}: {failure}"[:300], self.me)
        error = ""
        try:
            lags = await offsets.read_projection_lags(self.settings)
        except Exception as failure:  # the topics still show
            lags, error = [], f"{type(failure).__name__}: {failure}"[:300]
        view = TopicsPage(
            served_by=self.me,
            topic_prefix=self.settings.topic_prefix,
            groups=groups,
            topics=topics,
            projections=lags,
            projections_error=error,
        )
        return answer(request, view, render_topics)

    async def bad_records(self, request: web.Request) -> web.Response:
        after, consumer = request.query.get("after") or None, request.query.get("consumer") or None
        try:
            limit = keys_limit(request.query.get("limit"))
            view = await sections.bad_records(self.settings, self.me, after, limit, consumer)
        except (BadRequest, ValueError) as error:
            return problem(request, 400, f"bad query: {error}", self.me)
        return answer(request, view, render_bad_records)

    async def rebuild(self, request: web.Request) -> web.Response:
        return answer(request, await sections.rebuilds(self.settings, self.me), render_rebuild)

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["file"]
        if name not in STATIC:
            return problem(request, 404, "no such file", self.me)
        headers = {"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=(STATIC_DIR / name).read_bytes(), content_type=STATIC[name], headers=headers)


def register(app: faust.App, settings: WorkerSettings) -> None:
    """The console's pages and internal views on `app`'s web server."""
    console = Console(app, settings)
    add_view(app, "/console/", "console_index", get=console.index)
    add_view(
        app,
        "/console/login",
        "console_login",
        get=login.show_login,
        post=partial(login.log_in, token=settings.operator_token),
    )
    add_view(app, "/console/logout", "console_logout", post=login.log_out)
    add_view(app, "/console/static/{file}", "console_static", get=console.static)
    add_view(app, "/console/tables", "console_tables", get=console.tables)
    add_view(app, "/console/tables/{name}/keys", "console_keys", get=console.keys)
    add_view(app, "/console/tables/{name}/value", "console_value", get=console.value)
    add_view(app, "/console/topics", "console_topics", get=console.topics)
    add_view(app, "/console/bad-records", "console_bad_records", get=console.bad_records)
    add_view(app, "/console/rebuild", "console_rebuild", get=console.rebuild)
    add_view(app, INTERNAL, "console_internal_tables", get=console.internal_tables)
    add_view(app, INTERNAL + "/{name}/keys", "console_internal_keys", get=console.internal_keys)
    add_view(app, INTERNAL + "/{name}/value", "console_internal_value", get=console.internal_value)
