"""`python -m streams`: the streams worker, and the creation of the system's topics.

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
