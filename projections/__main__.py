"""Operator commands of the read models, and the projections worker.

    python -m projections migrate            # apply migrations/ (safe to rerun)
    python -m projections worker [faust options]
    python -m projections rebuild [--only users|chats|messages]...
                                             # replay the topics into emptied read models
                                             # (refused while a projections worker runs)
    python -m projections checksum           # one md5 per read-model table
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import asyncpg

from config.settings import CommonSettings, load
from projections.catalogue import PROJECTIONS


def run_migrate() -> int:
    from projections.migrate import migrate

    applied = asyncio.run(migrate(load(CommonSettings).database_url))
    print(f"migrations: {len(applied)} applied" + (f" ({', '.join(applied)})" if applied else ""))
    return 0


async def print_checksums(database_url: str) -> None:
    from projections.checksum import checksums

    conn = await asyncpg.connect(database_url)
    try:
        for checksum in await checksums(conn):
            print(checksum.line())
    finally:
        await conn.close()


def run_checksum() -> int:
    asyncio.run(print_checksums(load(CommonSettings).database_url))
    return 0


def rebuild_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m projections rebuild")
    parser.add_argument(
        "--only", action="append", choices=list(PROJECTIONS), help="rebuild this projection only (repeatable)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def run_rebuild(argv: list[str]) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from projections.catalogue import selected
    from projections.rebuild import RebuildRefused, rebuild

    args = rebuild_arguments(argv)
    settings = load(CommonSettings)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        with logging_redirect_tqdm():
            replayed = asyncio.run(rebuild(settings, selected(args.only), progress=not args.no_progress))
    except RebuildRefused as refusal:
        print(refusal, file=sys.stderr)
        return 1
    print("rebuilt: " + ", ".join(f"{name} ({count} records)" for name, count in replayed.items()))
    asyncio.run(print_checksums(settings.database_url))
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "migrate":
        return run_migrate()
    if command == "worker":
        import mode.loop

        mode.loop.use("uvloop")
        from projections.app import app

        app.main()
        return 0
    if command == "rebuild":
        return run_rebuild(argv[2:])
    if command == "checksum":
        return run_checksum()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
