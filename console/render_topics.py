"""The HTML of the topics and lag page."""

from __future__ import annotations

from console.html import Html, el, join, wide_table
from console.layout import page, section
from schemas.console import ProjectionLag, TopicsPage, TopicView


def topic_rows(topic: TopicView, groups: list[str], prefix: str) -> list[Html]:
    if not topic.exists:
        return [
            el(
                "tr",
                el("td", el("code", topic.name)),
                el("td", "does not exist", colspan=1 + 2 * len(groups) + 1),
                class_="topic-missing",
                data_topic=topic.name,
            )
        ]
    rows = []
    for p in topic.partitions:
        by_group = {g.group: g for g in p.groups}
        cells = []
        for group in groups:
            offset = by_group.get(group)
            committed = offset.committed if offset else None
            lag = offset.lag if offset else None
            cells.append(el("td", "—" if committed is None else committed, class_="group-committed", data_group=group))
            cells.append(el("td", "—" if lag is None else lag, class_="group-lag", data_group=group))
        rows.append(
            el(
                "tr",
                el("td", el("code", topic.name.removeprefix(prefix)), el("br"), el("small", topic.doc))
                if p.partition == 0
                else el("td"),
                el("td", p.partition),
                el("td", p.end_offset, class_="end-offset"),
                cells,
                class_="topic-partition-row",
                data_topic=topic.name,
                data_partition=p.partition,
            )
        )
    return rows


def topics_table(view: TopicsPage) -> Html:
    group_heads = [
        el("th", el("code", g.removeprefix(view.topic_prefix)), el("br"), label)
        for g in view.groups
        for label in ("committed", "lag")
    ]
    head = el("tr", el("th", "Topic"), el("th", "Partition"), el("th", "End offset"), group_heads)
    rows = [row for topic in view.topics for row in topic_rows(topic, view.groups, view.topic_prefix)]
    return wide_table(el("thead", head), el("tbody", rows), id="topics")


def seconds(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def lag_rows(lag: ProjectionLag, prefix: str) -> list[Html]:
    return [
        el(
            "tr",
            el("td", lag.projection),
            el("td", el("code", lag.topic.removeprefix(prefix))),
            el("td", p.partition),
            el("td", p.end_offset),
            el("td", p.next_offset),
            el("td", p.lag_events, class_="lag-events"),
            el("td", seconds(p.lag_seconds), class_="lag-seconds"),
            class_="projection-lag-row" + (" behind" if p.lag_events else ""),
            data_projection=lag.projection,
            data_partition=p.partition,
        )
        for p in lag.partitions
    ]


def projections_table(view: TopicsPage) -> Html:
    if view.projections_error:
        return el(
            "p", "Cannot read the projections' lag: ", view.projections_error, class_="error", id="projection-lag-error"
        )
    heads = ("Projection", "Topic", "Partition", "End offset", "Next offset", "Lag (events)", "Lag (seconds)")
    head = el("tr", *(el("th", h) for h in heads))
    rows = [row for lag in view.projections for row in lag_rows(lag, view.topic_prefix)]
    return wide_table(el("thead", head), el("tbody", rows), id="projection-lag")


def render_topics(view: TopicsPage) -> str:
    prefix = (
        el("p", "Topic and group names below are shown without their prefix ", el("code", view.topic_prefix))
        if view.topic_prefix
        else None
    )
    body = join(
        prefix,
        section("Projections' lag", projections_table(view), id="projections"),
        section("Topics", topics_table(view), id="topics-section"),
    )
    return page("topics", "Topics and lag", body, view.served_by, refresh_s=10)
