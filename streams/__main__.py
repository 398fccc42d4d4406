"""`python -m streams`: the streams worker, the creation of the system's topics, the dead letters.

Each command has its `--help`; the settings come from the environment (and `.env`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from config.logs import configure
from config.settings import CommonSettings, load
from runtime.cli import HELP_OPTIONS, faust_worker, run

if TYPE_CHECKING:
    import faust  # the worker's app is imported only when `worker` runs

PROG = "python -m streams"


@click.group(context_settings=HELP_OPTIONS)
def cli() -> None:
    """The deciding side: the worker whose agents decide every command, and the topics it needs."""


@cli.command("create-topics", context_settings=HELP_OPTIONS)
def create_topics() -> int:
    """Create the topics of schemas/topics.py that are missing on the broker.

    Partitions: TOPIC_PARTITIONS for the topics keyed by chat or user; replication: as many copies
    as the cluster allows (up to 3). Topics that exist are left as they are: safe to run again.
    """
    from schemas.topics import ALL
    from streams.topics import create_topics as create

    settings = load(CommonSettings)
    configure(settings.log_format, "WARNING")
    created = asyncio.run(create(settings))
    click.echo(f"topics: {len(created)} created, {len(ALL) - len(created)} already there")
    return 0


@cli.group("dead-letters", context_settings=HELP_OPTIONS)
def dead_letters() -> None:
    """The records the agents and projections skipped (topic dead.letters): list them, feed one again after a fix."""


@dead_letters.command("list", context_settings=HELP_OPTIONS)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many.")
@click.option("--consumer", help="Only those this agent or projection skipped (chat_decider, messages, ...).")
@click.option("--after", help="The cursor printed at the end of the previous page: the older ones.")
@click.option("--json", "as_json", is_flag=True, help="The page as JSON (raw key and value in base64).")
def list_dead_letters(limit: int, consumer: str | None, after: str | None, as_json: bool) -> int:
    """List the dead letters, newest first.

    Each line: id (consumer|topic|partition|offset), status (dead, replay_requested, replayed, replay_failed), reason
    and detail, size and when; and the outcome of its replay.
    """
    from schemas import codec
    from streams.dead_letters import describe, read_dead_letters

    settings = load(CommonSettings)
    configure(settings.log_format, "WARNING")
    try:
        page = asyncio.run(read_dead_letters(settings, after=after, limit=limit, consumer=consumer))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--after") from None
    if as_json:
        click.echo(codec.dumps(page).decode())
        return 0
    for entry in page.entries:
        click.echo(describe(entry))
    click.echo(
        f"{len(page.entries)} of {page.total} dead letters"
        + (f"; older: --after '{page.next_after}'" if page.next_after else "")
    )
    return 0


@dead_letters.command("replay", context_settings=HELP_OPTIONS)
@click.argument("ref")
def replay_dead_letter(ref: str) -> int:
    """Feed one dead letter again, after a fix.

    REF is its id, or topic:partition:offset. The record is read with the code as it is now first.

    A command goes back to its topic and partition; an event is applied by the projections worker to the projection
    that skipped it, once. Exit 1, with the reason, when it would still be skipped, was not found or failed; a
    letter replayed already is not fed again (exit 0).
    """
    from streams.dead_letters import ReplayRefused, replay

    settings = load(CommonSettings)
    configure(settings.log_format, "WARNING")
    try:
        outcome = asyncio.run(replay(settings, ref))
    except ReplayRefused as error:
        click.echo(f"replay refused: {error}", err=True)
        return 1
    click.echo(f"replayed {outcome.id}: {outcome.detail}")
    return 0


def streams_app() -> faust.App:
    from streams.app import app

    return app


cli.add_command(
    faust_worker(
        streams_app,
        "Run the streams worker: the chat and user agents decide every command against their tables "
        "and append the events (exit 70 when Kafka keeps refusing them).",
    )
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(cli, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
