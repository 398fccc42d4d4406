"""The HTML of the tables, keys and value pages (every value passes through `console.html`, escaped)."""

from __future__ import annotations

import json
from typing import Any

from console.html import Html, el, join, link, wide_table
from console.layout import page, section
from schemas.console import KeysPage, PartitionView, TablesPage, TableView, ValuePage, WorkerStatus


def keys_path(table: str) -> str:
    return f"/console/tables/{table}/keys"


def value_path(table: str, key: str) -> str:
    return link(f"/console/tables/{table}/value", {"key": key})


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def workers_table(workers: list[WorkerStatus]) -> Html:
    rows = [
        el(
            "tr",
            el("td", el("code", w.url), " (this worker)" if w.this_worker else None, class_="worker-url"),
            el("td", "answering" if w.answered else "not answering", class_="worker-status"),
            el("td", w.error, class_="worker-error"),
            class_="worker-row" + ("" if w.answered else " down"),
            data_worker=w.url,
        )
        for w in workers
    ]
    head = el("tr", el("th", "Worker"), el("th", "Status"), el("th", "Error"))
    return wide_table(el("thead", head), el("tbody", rows), id="workers")


def incomplete_note(complete: bool) -> Html | None:
    if complete:
        return None
    return el("p", "Some workers did not answer: what they hold is missing here.", class_="warning", id="incomplete")


def state_text(p: PartitionView) -> str:
    if p.state == "recovering" and p.highwater:
        done = (p.recovered_offset or 0) / p.highwater
        return f"recovering {done:.0%} ({p.remaining} left)"
    return p.state


def partition_row(p: PartitionView) -> Html:
    return el(
        "tr",
        el("td", p.partition),
        el("td", el("code", p.owner) if p.owner else "—", class_="partition-owner"),
        el("td", "?" if p.keys is None else p.keys, class_="partition-keys"),
        el("td", "?" if p.changelog_end_offset is None else p.changelog_end_offset, class_="partition-end-offset"),
        el("td", state_text(p), class_="partition-state"),
        el("td", ", ".join(p.standbys) or "—", class_="partition-standbys"),
        class_=f"partition-row state-{p.state.replace(' ', '-')}",
        data_partition=p.partition,
    )


def table_detail(table: TableView) -> Html:
    head = el("tr", *(el("th", h) for h in ("Partition", "Owner", "Keys", "Changelog end offset", "State", "Standbys")))
    return section(
        table.name,
        el("p", table.help or "(no help text)", class_="help"),
        el("p", "Changelog: ", el("code", table.changelog_topic)),
        wide_table(el("thead", head), el("tbody", [partition_row(p) for p in table.partitions]), class_="partitions"),
        class_="table-detail",
        id=f"table-{table.name}",
    )


def summary_row(table: TableView) -> Html:
    return el(
        "tr",
        el("td", el("a", table.name, href=keys_path(table.name), class_="table-keys-link"), class_="table-name"),
        el("td", table.total_keys, class_="table-total", data_complete=str(table.complete).lower()),
        el("td", table.help, class_="table-help"),
        el("td", el("code", table.changelog_topic), class_="table-changelog"),
        el("td", "" if table.complete else "incomplete: a worker did not answer", class_="table-note"),
        class_="table-row",
        data_table=table.name,
    )


def render_tables(view: TablesPage) -> str:
    if not view.has_tables:
        body = join(
            el("p", view.note, id="no-tables"),
            section("Workers", workers_table(view.workers)),
        )
        return page("tables", "Tables", body, view.served_by)
    head = el("tr", *(el("th", h) for h in ("Table", "Keys", "What it maps", "Changelog", "")))
    summary = wide_table(el("thead", head), el("tbody", [summary_row(t) for t in view.tables]), id="tables")
    body = join(
        el("p", "Rebalancing: the assignment is moving.", class_="warning") if view.rebalancing else None,
        incomplete_note(all(t.complete for t in view.tables)),
        summary,
        section("Workers", workers_table(view.workers)),
        [table_detail(t) for t in view.tables],
    )
    return page("tables", f"Tables of {view.app}", body, view.served_by)


def keys_filter(view: KeysPage) -> Html:
    return el(
        "form",
        el("label", "Prefix ", el("input", type="text", name="prefix", value=view.prefix)),
        el("label", "Per page ", el("input", type="number", name="limit", value=view.limit, min=1, max=1000)),
        el("button", "Apply", type="submit", id="keys-apply"),
        method="get",
        action=keys_path(view.table),
        id="keys-filter",
    )


def key_row(view: KeysPage, index: int) -> Html:
    location = view.keys[index]
    return el(
        "tr",
        el("td", el("a", location.key, href=value_path(view.table, location.key), class_="key-link")),
        el("td", location.partition, class_="key-partition"),
        el("td", el("code", location.worker), class_="key-worker"),
        class_="key-row",
        data_key=location.key,
    )


def render_keys(view: KeysPage, served_by: str) -> str:
    if view.keys:
        head = el("tr", el("th", "Key"), el("th", "Partition"), el("th", "Worker"))
        listing: Html = wide_table(
            el("thead", head), el("tbody", [key_row(view, i) for i in range(len(view.keys))]), id="keys"
        )
    else:
        listing = el("p", "No keys here.", id="keys-empty")
    params: dict[str, str | int | None] = {"prefix": view.prefix, "limit": view.limit}
    body = join(
        el("p", el("a", "All tables", href="/console/tables")),
        keys_filter(view),
        incomplete_note(view.complete),
        el(
            "p",
            el("span", len(view.keys), id="keys-shown"),
            " keys",
            join(" after ", el("code", view.after)) if view.after else None,
        ),
        listing,
        el(
            "p",
            el(
                "a", "Next page", href=link(keys_path(view.table), {**params, "after": view.next_after}), id="next-page"
            ),
        )
        if view.next_after is not None
        else None,
        el("p", el("a", "First page", href=link(keys_path(view.table), params), id="first-page"))
        if view.after
        else None,
    )
    return page("keys", f"Keys of {view.table}", body, served_by)


def render_value(view: ValuePage, served_by: str) -> str:
    where = wide_table(
        el("tr", el("th", "Table"), el("td", el("a", view.table, href=keys_path(view.table)))),
        el("tr", el("th", "Key"), el("td", el("code", view.key, id="value-key"))),
        el(
            "tr",
            el("th", "Partition"),
            el("td", "—" if view.partition is None else view.partition, id="value-partition"),
        ),
        el("tr", el("th", "Worker"), el("td", view.worker or "—", id="value-worker")),
        class_="where",
    )
    shown = (
        el("pre", pretty(view.value), id="value")
        if view.found
        else el("p", "No worker holds this key.", id="value-not-found")
    )
    body = join(where, incomplete_note(view.complete), shown)
    return page("value", f"{view.table}: value", body, served_by)
