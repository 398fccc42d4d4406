"""scripts/browser: silent when Debian's chromium, its driver and a font are there; when one is missing,
a `check` and a run without root say which and the command that installs it, and fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "browser"


def run(
    *args: str, env: dict[str, str] | None = None, as_nobody: bool = False, script: Path = SCRIPT
) -> subprocess.CompletedProcess[str]:
    command = [str(script), *args]
    if as_nobody:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=30, check=False
    )


def installed_here(tmp_path: Path) -> dict[str, str]:
    """Stand-ins for the programs and the font, so that the test does not depend on what this machine has."""
    paths = {}
    for name, variable in (
        ("chromium", "CHROMIUM_BINARY"),
        ("chromedriver", "CHROMEDRIVER_PATH"),
        ("font", "BROWSER_FONT"),
    ):
        program = tmp_path / name
        program.write_text("#!/bin/sh\n")
        program.chmod(0o755)
        paths[variable] = str(program)
    return paths


@pytest.fixture
def script_for_nobody() -> Iterator[Path]:
    """A copy of the script that user nobody can run: the checkout may lie in a folder only root can
    enter (a clone under /root), and so may pytest's own temporary folders."""
    folder = Path(tempfile.mkdtemp(prefix="browser-script-"))
    try:
        folder.chmod(0o755)
        copy = folder / SCRIPT.name
        shutil.copy(SCRIPT, copy)
        copy.chmod(0o755)
        yield copy
    finally:
        shutil.rmtree(folder)


def test_with_all_there_it_says_nothing_and_succeeds(tmp_path: Path) -> None:
    for args in ((), ("check",)):
        done = run(*args, env=installed_here(tmp_path))
        assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_check_names_what_is_missing_and_how_to_install_it(tmp_path: Path) -> None:
    env = {**installed_here(tmp_path), "CHROMEDRIVER_PATH": str(tmp_path / "gone")}
    done = run("check", env=env)
    assert done.returncode == 1
    assert "missing: chromium-driver;" in done.stderr
    assert "apt-get install -y chromium chromium-driver fonts-liberation" in done.stderr


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to drop it")
def test_without_root_it_installs_nothing_and_says_to_run_it_as_root(tmp_path: Path, script_for_nobody: Path) -> None:
    # the user nobody cannot enter tmp_path (0700): a program of the system stands in for the driver
    env = {
        "CHROMIUM_BINARY": str(tmp_path / "gone"),
        "CHROMEDRIVER_PATH": "/bin/sh",
        "BROWSER_FONT": str(tmp_path / "no"),
    }
    done = run(env=env, as_nobody=True, script=script_for_nobody)
    assert done.returncode == 2
    assert "missing: chromium fonts-liberation; run as root" in done.stderr


def test_an_unknown_command_is_refused() -> None:
    assert run("remove").returncode == 2
