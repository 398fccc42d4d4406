"""The HTML of the sections other parts feed: bad records (dead letters) and rebuild progress."""

from __future__ import annotations

from datetime import datetime

from console.html import Html, el, join, link, wide_table
from console.layout import page
from schemas.console import BadRecordsPage, RebuildPage
from schemas.dead_letters import DeadLetterEntry
from schemas.progress import RebuildProgress

PREVIEW_CHARS = 160
REBUILD_REFRESH_S = 2


def preview(raw: bytes | None) -> str:
    """The bytes as text for a glance (escaped by the builder); the JSON has them exactly (base64)."""
    if raw is None:
        return "(none)"
    text = raw.decode("utf-8", errors="replace")
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + f"… ({len(raw)} bytes)"


def when(at: datetime | None) -> str:
    return "—" if at is None else at.strftime("%Y-%m-%d %H:%M:%S UTC")


def letter_row(entry: DeadLetterEntry) -> Html:
    letter = entry.letter
    return el(
        "tr",
        el("td", el("code", entry.id), class_="bad-record-id"),
        el("td", letter.consumer, class_="bad-record-consumer"),
        el("td", el("strong", letter.reason), el("br"), letter.detail, class_="bad-record-reason"),
        el("td", el("code", f"{letter.topic}[{letter.partition}]@{letter.offset}"), class_="bad-record-source"),
        el("td", when(letter.occurred_at), el("br"), "dead ", when(letter.dead_at), class_="bad-record-time"),
        el(
            "td",
            entry.status,
            f" (seen {entry.seen}×)" if entry.seen > 1 else "",
            el("br"),
            entry.outcome,
            class_="bad-record-status",
        ),
        el(
            "td",
            el("code", preview(letter.key)),
            el("br"),
            el("code", preview(letter.value)),
            class_="bad-record-bytes",
        ),
        class_=f"bad-record-row status-{entry.status}",
        data_id=entry.id,
    )


def render_bad_records(view: BadRecordsPage) -> str:
    title = "Bad records"
    if not view.available or view.page is None:
        return page(
            "bad-records", title, el("p", view.reason, id="bad-records-unavailable", class_="error"), view.served_by
        )
    listing = view.page
    heads = ("Id", "Consumer", "Reason", "Source", "When", "Status", "Key / value")
    entries = (
        wide_table(
            el("thead", el("tr", *(el("th", h) for h in heads))),
            el("tbody", [letter_row(e) for e in listing.entries]),
            id="bad-records-list",
        )
        if listing.entries
        else el("p", "No dead letters" + (" of this consumer." if view.consumer else "."), id="bad-records-empty")
    )
    params: dict[str, str | int | None] = {"consumer": view.consumer}
    body = join(
        el(
            "form",
            el("label", "Consumer ", el("input", type="text", name="consumer", value=view.consumer or "")),
            el("button", "Filter", type="submit", id="bad-records-filter-apply"),
            method="get",
            action="/console/bad-records",
            id="bad-records-filter",
        ),
        el(
            "p",
            el("span", listing.total, id="bad-records-total"),
            " dead letters, newest first.",
            f" {listing.unreadable} records of the topic are unreadable." if listing.unreadable else "",
        ),
        entries,
        el(
            "p",
            el(
                "a", "Older", href=link("/console/bad-records", {**params, "after": listing.next_after}), id="next-page"
            ),
        )
        if listing.next_after
        else None,
        el("p", "Re-feed one after a fix: ", el("code", "python -m streams dead-letters replay <id>"), class_="hint"),
    )
    return page("bad-records", title, body, view.served_by)


def eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def rebuild_row(progress: RebuildProgress) -> Html:
    return el(
        "tr",
        el("td", progress.projection),
        el("td", progress.phase, class_="rebuild-phase"),
        el("td", el("progress", value=progress.done, max=max(progress.total, 1), class_="rebuild-bar")),
        el("td", progress.done, class_="rebuild-done"),
        el("td", progress.total, class_="rebuild-total"),
        el("td", f"{progress.events_per_s:,.0f}", class_="rebuild-rate"),
        el("td", eta(progress.eta_s), class_="rebuild-eta"),
        el("td", when(progress.started_at), el("br"), when(progress.updated_at), class_="rebuild-times"),
        el("td", progress.error, class_="rebuild-error"),
        class_=f"rebuild-row phase-{progress.phase}",
        data_projection=progress.projection,
    )


def render_rebuild(view: RebuildPage) -> str:
    title = "Rebuild"
    if not view.available:
        body: Html = el("p", view.reason, id="rebuild-unavailable", class_="error")
    elif not view.rebuilds:
        body = el(
            "p",
            "No rebuild was ever recorded. Start one with ",
            el("code", "python -m projections rebuild"),
            ".",
            id="rebuild-none",
        )
    else:
        heads = ("Projection", "Phase", "", "Done", "Total", "Events/s", "ETA", "Started / updated", "Error")
        body = wide_table(
            el("thead", el("tr", *(el("th", h) for h in heads))),
            el("tbody", [rebuild_row(p) for p in view.rebuilds]),
            id="rebuild-progress",
        )
    return page("rebuild", title, body, view.served_by, refresh_s=REBUILD_REFRESH_S)
