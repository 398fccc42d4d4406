"""Operator commands of the read models, and the projections worker.

    python -m projections migrate            # apply migrations/ (safe to rerun)
    python -m projections worker [faust options]
"""

from __future__ import annotations

import asyncio
import sys

from config.settings import CommonSettings, load


def run_migrate() -> int:
    from projections.migrate import migrate

    applied = asyncio.run(migrate(load(CommonSettings).database_url))
    print(f"migrations: {len(applied)} applied" + (f" ({', '.join(applied)})" if applied else ""))
    return 0


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "migrate":
        return run_migrate()
    if command == "worker":
        from projections.app import app

        app.main()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
