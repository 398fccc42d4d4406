"""The shape of every `python -m <package>` command: click, errors on one line, Faust's worker behind it.

`run()` runs a click command the way the processes need: `--help` exits 0, a bad option or an unknown
command exits 2 with one line naming it, and an `int` a command returns is its exit code (the
settings' 2, a refused rebuild's 1; the workers' 70 and 75 leave through `os._exit`, untouched).

`faust_worker()` is the `worker` subcommand of both workers: everything after `worker` goes to
Faust's own `worker` command (its `--help` lists its options: `-l`, `--web-port`, ...), as if the
app's `main()` had been called, so `python -m streams worker -l info --web-port 6066` starts the
worker exactly as before.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    import faust

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
"""The context settings of every operator command (Faust's worker keeps `-h` for `--web-host`)."""


def run(command: click.Command, prog_name: str, args: Sequence[str] | None = None) -> int:
    """Run `command` with `args` (the process's arguments by default) and return its exit code."""
    try:
        result = command.main(args=list(args) if args is not None else None, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as error:  # no command given: the help, as a usage error
        print(error.format_message(), file=sys.stderr)
        return error.exit_code
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx else prog_name
        print(f"error: {error.format_message().rstrip('.')} (see {where} --help)", file=sys.stderr)
        return error.exit_code
    except click.ClickException as error:
        print(f"error: {error.format_message()}", file=sys.stderr)
        return error.exit_code
    except click.Abort:
        print("aborted", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def faust_worker(load_app: Callable[[], faust.App], description: str) -> click.Command:
    """A `worker` command that starts the app `load_app` returns with Faust's worker command.

    `load_app` imports the app only when the command runs: `python -m projections --help` and the
    other subcommands read no worker settings and declare no agents.
    """

    @click.command(
        "worker",
        help=f"{description}\n\nThe options are Faust's worker options: `worker --help` lists them.",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
        add_help_option=False,
    )
    @click.pass_context
    def worker(ctx: click.Context) -> int:
        import mode.loop

        mode.loop.use("uvloop")  # before the app is imported: Faust makes its loop then
        app = load_app()
        from faust.cli.faust import cli as faust_cli

        app.finalize()
        app.worker_init()
        app.worker_init_post_autodiscover()
        quiet = ["--quiet"] if app.conf.logging_config else []  # JSON lines only: no banner between them
        prog_name = ctx.parent.command_path if ctx.parent else "worker"
        result = faust_cli.main(args=[*quiet, "worker", *ctx.args], prog_name=prog_name, standalone_mode=False, app=app)
        return result if isinstance(result, int) else 0

    return worker
