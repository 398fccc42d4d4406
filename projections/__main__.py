"""`python -m projections`: the operator commands of the read models, and the projections worker.

Each command has its `--help`; the settings come from the environment (and `.env`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg
import click

from config.logs import configure
from config.settings import CommonSettings, load
from projections.catalogue import PROJECTIONS
from runtime.cli import HELP_OPTIONS, faust_worker, run

if TYPE_CHECKING:
    import faust  # the worker's app is imported only when `worker` runs

PROG = "python -m projections"

EXIT_REBUILD_REFUSED = 1


def common_settings() -> CommonSettings:
    """The settings of a one-shot command, with its logs set up (warnings and above: the command
    prints what it did)."""
    settings = load(CommonSettings)
    configure(settings.log_format, "WARNING")
    return settings


@click.group(context_settings=HELP_OPTIONS)
def cli() -> None:
    """The read models in PostgreSQL: migrate them, run the worker that keeps them, rebuild them
    from the event topics, compare them by checksum."""


@cli.command(context_settings=HELP_OPTIONS)
def migrate() -> int:
    """Apply the SQL files of migrations/ that are not applied yet, in order.

    Each is recorded in `schema_migrations`: safe to run again, and to run twice at once (an
    advisory lock). Prints how many were applied.
    """
    from projections.migrate import migrate as apply_migrations

    applied = asyncio.run(apply_migrations(common_settings().database_url))
    click.echo(f"migrations: {len(applied)} applied" + (f" ({', '.join(applied)})" if applied else ""))
    return 0


async def print_checksums(database_url: str) -> None:
    from projections.checksum import checksums

    conn = await asyncpg.connect(database_url)
    try:
        for checksum in await checksums(conn):
            click.echo(checksum.line())
    finally:
        await conn.close()


@cli.command(context_settings=HELP_OPTIONS)
def checksum() -> int:
    """Print one md5 per read-model table (equal before and after a rebuild)."""
    asyncio.run(print_checksums(common_settings().database_url))
    return 0


@cli.command(context_settings=HELP_OPTIONS)
@click.option(
    "--only",
    "only",
    multiple=True,
    type=click.Choice(list(PROJECTIONS)),
    help="Rebuild this projection only (repeatable). Default: all of them.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar (for logs and scripts).")
def rebuild(only: Sequence[str], no_progress: bool) -> int:
    """Empty the read models (all, or those of --only) and replay their topics from offset 0.

    Refused (exit 1) while a projections worker runs: they share an advisory lock. Stop the worker
    first (`scripts/system ctl stop projections`), rebuild, start it again. Prints the records
    replayed per projection, then one checksum per table.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from projections.catalogue import selected
    from projections.rebuild import RebuildRefused
    from projections.rebuild import rebuild as replay

    settings = common_settings()
    try:
        with logging_redirect_tqdm():
            replayed = asyncio.run(replay(settings, selected(list(only) or None), progress=not no_progress))
    except RebuildRefused as refusal:
        click.echo(str(refusal), err=True)
        return EXIT_REBUILD_REFUSED
    click.echo("rebuilt: " + ", ".join(f"{name} ({count} records)" for name, count in replayed.items()))
    asyncio.run(print_checksums(settings.database_url))
    return 0


def projections_app() -> faust.App:
    from projections.app import app

    return app


cli.add_command(
    faust_worker(
        projections_app,
        "Run the projections worker: one agent per projection applies its event topic to PostgreSQL "
        "(exit 75 when PostgreSQL keeps refusing a batch).",
    )
)


def main(argv: Sequence[str] | None = None) -> int:
    return run(cli, PROG, argv)


if __name__ == "__main__":
    sys.exit(main())
