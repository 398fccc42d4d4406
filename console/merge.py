"""Merging the workers' shares into one view (pure: the answers in, the page's model out).

The owner of a partition is the one Faust's assignment names (`changelog_distribution`, the same map
its router uses); its own report gives the count and state. An owner that did not answer leaves
its partitions' counts unknown and the table marked incomplete, never silently smaller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas.console import (
    KeyLocation,
    KeysPage,
    LocalKeys,
    LocalPartition,
    LocalTables,
    LocalValue,
    PartitionView,
    TableView,
    ValuePage,
    WorkerStatus,
)

Distribution = Mapping[str, Mapping[str, list[int]]]
"""Worker URL -> changelog topic -> the partitions it owns (Faust's `changelog_distribution`)."""


@dataclass(frozen=True)
class TableSpec:
    name: str
    help: str
    changelog_topic: str
    partitions: int


def owners(distribution: Distribution, topic: str) -> dict[int, str]:
    return {p: url for url, topics in distribution.items() for p in topics.get(topic, [])}


def reported(answers: Mapping[str, LocalTables | None], table: str) -> dict[str, dict[int, LocalPartition]]:
    """Worker URL -> partition -> what that worker says of it, for the workers that answered."""
    found: dict[str, dict[int, LocalPartition]] = {}
    for url, answer in answers.items():
        if answer is None:
            continue
        for local in answer.tables:
            if local.name == table:
                found[url] = {p.partition: p for p in local.partitions}
    return found


def partition_view(
    partition: int,
    owner: str | None,
    answered: bool,
    reports: dict[str, dict[int, LocalPartition]],
    end_offset: int | None,
) -> PartitionView:
    standbys = sorted(
        url
        for url, parts in reports.items()
        if url != owner and (held := parts.get(partition)) is not None and held.state == "standby"
    )
    common = {"partition": partition, "owner": owner, "changelog_end_offset": end_offset, "standbys": standbys}
    if owner is None:
        return PartitionView(**common, owner_answered=False, state="unassigned", keys=None)
    if not answered:
        return PartitionView(**common, owner_answered=False, state="not answering", keys=None)
    local = reports.get(owner, {}).get(partition)
    if local is None or local.state == "standby":
        return PartitionView(**common, owner_answered=True, state="moving", keys=None)
    return PartitionView(
        **common,
        owner_answered=True,
        state=local.state,
        keys=local.keys,
        recovered_offset=local.offset,
        highwater=local.highwater,
        remaining=local.remaining,
    )


def merge_table(
    spec: TableSpec,
    distribution: Distribution,
    answers: Mapping[str, LocalTables | None],
    end_offsets: Mapping[int, int],
) -> TableView:
    owner_of = owners(distribution, spec.changelog_topic)
    reports = reported(answers, spec.name)
    numbers = sorted(set(range(spec.partitions)) | set(owner_of) | set(end_offsets))
    views = [
        partition_view(p, owner_of.get(p), answers.get(owner_of.get(p) or "") is not None, reports, end_offsets.get(p))
        for p in numbers
    ]
    return TableView(
        name=spec.name,
        help=spec.help,
        changelog_topic=spec.changelog_topic,
        total_keys=sum(v.keys or 0 for v in views),
        complete=all(v.keys is not None for v in views),
        partitions=views,
    )


def statuses(urls: list[str], errors: Mapping[str, str], this_worker: str) -> list[WorkerStatus]:
    return [
        WorkerStatus(url=url, answered=url not in errors, error=errors.get(url, ""), this_worker=url == this_worker)
        for url in sorted(urls)
    ]


def merge_keys(
    table: str,
    prefix: str,
    after: str | None,
    limit: int,
    answers: Mapping[str, LocalKeys | None],
    workers: list[WorkerStatus],
) -> KeysPage:
    """The first `limit` keys of all the workers' first `limit` each: those hold the first `limit`
    of the union, so paging with `next_after` walks every key exactly once."""
    by_key: dict[str, KeyLocation] = {}
    more = False
    for answer in answers.values():
        if answer is None:
            continue
        more = more or answer.more
        for location in answer.keys:
            by_key.setdefault(location.key, location)
    ordered = [by_key[k] for k in sorted(by_key)]
    page = ordered[:limit]
    has_next = (more or len(ordered) > limit) and bool(page)
    return KeysPage(
        table=table,
        prefix=prefix,
        after=after,
        limit=limit,
        keys=page,
        next_after=page[-1].key if has_next else None,
        complete=all(w.answered for w in workers),
        workers=workers,
    )


def pick_value(
    table: str, key: str, answers: Mapping[str, LocalValue | None], workers: list[WorkerStatus]
) -> ValuePage:
    complete = all(w.answered for w in workers)
    for url in sorted(answers):
        answer = answers[url]
        if answer is not None and answer.found:
            return ValuePage(
                table=table,
                key=key,
                found=True,
                value=answer.value,
                partition=answer.partition,
                worker=url,
                complete=complete,
                workers=workers,
            )
    return ValuePage(table=table, key=key, found=False, complete=complete, workers=workers)
