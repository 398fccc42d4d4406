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
EXIT_REBUILD_FAILED = 1
EXIT_CHECKSUM_MISMATCH = 3
EXIT_SWAP_FAILED = 4


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
    """Print a checksum per live read-model table (equal before and after a rebuild of the same version)."""
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
@click.option(
    "--upgrade",
    is_flag=True,
    help="Only the projections whose live read model is an older version than this code's (what a worker runs).",
)
@click.option(
    "--repair",
    is_flag=True,
    help="Swap in even when the checksums differ (the live model is known to be wrong); the differences are printed.",
)
def rebuild(only: Sequence[str], no_progress: bool, upgrade: bool, repair: bool) -> int:
    """Build the read models (all, or those of --only) anew beside the running worker, and swap them in.

    Each is built in a shadow schema from its topic, caught up with the live model, compared with it
    by checksum at the same offsets (when both are the same version), then swapped in in one short
    transaction. Readers see the old model until the swap, the new one after it. Prints, per
    projection, the records replayed, the checksums of both sides and the worker's pauses; then
    `rebuilt: NAME (N records), ...`.

    Exit 1 when another rebuild of one of them is running, 3 when the checksums differ (unless
    --repair), 4 when the
    swap could not take its locks; the live model is then untouched (projections listed before the
    failing one were swapped in).
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from projections.catalogue import selected
    from projections.rebuild import ChecksumMismatch, RebuildFailed, RebuildRefused, Rebuilt, SwapFailed
    from projections.rebuild import rebuild as build

    def report(outcome: Rebuilt) -> None:
        for line in outcome.lines():
            click.echo(line)

    settings = common_settings()
    try:
        with logging_redirect_tqdm():
            done = asyncio.run(
                build(
                    settings,
                    selected(list(only) or None),
                    progress=not no_progress,
                    upgrade=upgrade,
                    report=report,
                    repair=repair,
                )
            )
    except RebuildRefused as refusal:
        click.echo(str(refusal), err=True)
        return EXIT_REBUILD_REFUSED
    except RebuildFailed as failure:
        report(failure.outcome)
        click.echo(f"rebuild failed: {failure}", err=True)
        if isinstance(failure, ChecksumMismatch):
            return EXIT_CHECKSUM_MISMATCH
        return EXIT_SWAP_FAILED if isinstance(failure, SwapFailed) else EXIT_REBUILD_FAILED
    swapped = [f"{name} ({o.records} records)" for name, o in done.items() if o.swapped]
    click.echo("rebuilt: " + (", ".join(swapped) or "none"))
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
