"""The operator commands (`python -m projections|streams|gateway`): a real `--help` for every
command that exits 0 and does nothing else, and a bad option or command that exits 2 with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import click
import pytest
from click.testing import CliRunner

import gateway.__main__ as gateway_cli
import projections.__main__ as projections_cli
import streams.__main__ as streams_cli

ROOT = Path(__file__).resolve().parents[2]

Main = Callable[[Sequence[str] | None], int]
PROGRAMS: list[tuple[str, click.Command, Main]] = [
    ("projections", projections_cli.cli, projections_cli.main),
    ("streams", streams_cli.cli, streams_cli.main),
    ("gateway", gateway_cli.serve, gateway_cli.main),
]


def command_paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and subcommand, as the words that name it; not `worker`, whose options (and
    their `--help`) are Faust's: see the subprocess tests below."""
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            if name != "worker":
                yield from command_paths(sub, (*path, name))


EVERY_COMMAND = [
    pytest.param(name, cli, path, id=" ".join((name, *path)))
    for name, cli, _ in PROGRAMS
    for path in command_paths(cli)
]


@pytest.fixture(autouse=True)
def no_settings_no_services(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that reads its settings or opens a connection fails the test: `--help` and a
    refused option must do neither (`migrate --help` once ran the migrations)."""

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("a command read its settings or connected")

    for module in (projections_cli, streams_cli, gateway_cli):
        monkeypatch.setattr(module, "load", refuse)
    monkeypatch.setattr("asyncpg.connect", refuse)
    monkeypatch.setattr("projections.migrate.migrate", refuse)


@pytest.mark.parametrize(("name", "cli", "path"), EVERY_COMMAND)
def test_every_command_has_a_help_that_exits_0(name: str, cli: click.Command, path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name=f"python -m {name}")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: python -m {' '.join((name, *path))} [OPTIONS]")
    description = result.output.split("\n\n")[1].strip()
    assert len(description) > 20, f"no description in {result.output}"
    assert "-h, --help" in result.output


def test_every_option_of_rebuild_says_what_it_does_and_its_choices() -> None:
    output = CliRunner().invoke(projections_cli.cli, ["rebuild", "--help"]).output
    assert "--only [users|chats|messages|credentials]" in output and "--no-progress" in output
    assert "--repair" in output and "--upgrade" in output
    flat = " ".join(output.split()).lower()
    for code in ("exit 1 when another rebuild", "3 when the checksums differ", "4 when the swap"):
        assert code in flat, f"the exit codes are documented: {code!r} missing"


@pytest.mark.parametrize(("name", "cli", "path"), EVERY_COMMAND)
def test_an_unknown_option_exits_2_with_one_line(
    name: str, cli: click.Command, path: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    main = next(m for n, _, m in PROGRAMS if n == name)
    assert main([*path, "--no-such-option"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("error: No such option: --no-such-option") and "--help" in line


@pytest.mark.parametrize("name", ["projections", "streams"])
def test_an_unknown_command_exits_2_with_one_line(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    main = next(m for n, _, m in PROGRAMS if n == name)
    assert main(["no-such-command"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "No such command 'no-such-command'" in line


def test_rebuild_takes_only_known_projections() -> None:
    def only(*args: str) -> object:
        return projections_cli.rebuild.make_context("rebuild", list(args)).params["only"]

    assert only("--only", "users", "--only", "chats") == ("users", "chats")
    assert only() == (), "none named: all of them"
    with pytest.raises(click.BadParameter):
        only("--only", "nothing")


def test_a_bad_value_exits_2_with_one_line_naming_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert projections_cli.main(["rebuild", "--only", "messagez"]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert "'messagez' is not one of 'users', 'chats', 'messages'" in line


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert projections_cli.main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Usage: python -m projections") and "migrate" in err and "worker" in err


def python_m(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`python -m <args>` as the supervisor runs it (the settings of `.env`), its Faust data in `data_dir`."""
    env = {**os.environ, "WORKER_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("name", ["streams", "projections"])
def test_the_worker_help_is_fausts_worker_help(name: str, tmp_path: Path) -> None:
    """`worker` hands everything after it to Faust's own worker command, as `scripts/system` starts
    it (`worker -l info --web-port N`): its `--help` lists those options and starts nothing."""
    done = python_m(name, "worker", "--help", data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: python -m {name} worker [OPTIONS]")
    assert "--web-port" in done.stdout and "--loglevel" in done.stdout


def test_a_bad_worker_option_exits_2_with_one_line(tmp_path: Path) -> None:
    done = python_m("streams", "worker", "--no-such-option", data_dir=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: No such option: --no-such-option (see python -m streams worker --help)"]
