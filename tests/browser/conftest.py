"""Fixtures of the browser tests: `browsers` opens headless Chromium sessions (as many as a test needs,
phone or desktop sized) and quits them all after the test, failed or not. Screenshots go to
tests/browser/screenshots/<module>/<test>/ (ignored by git), numbered in the order taken; a test that
fails gets a last one of each session. A machine without Chromium or its driver fails these tests with
the command that installs them: a browser test that skips would pass having tested nothing."""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from tests.browser.chrome import BrowserSessions

SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


def shots_dir_of(node: pytest.Item) -> Path:
    name = node.name.replace("[", "-").replace("]", "").replace("/", "-")
    return SCREENSHOTS / node.path.stem / name


def fail_missing(problem: str) -> NoReturn:
    pytest.fail(problem, pytrace=False)


@pytest.fixture
def browsers(request: pytest.FixtureRequest) -> Iterator[BrowserSessions]:
    """Opens sessions with `browsers.open(label, PHONE|DESKTOP)`; this test's screenshots folder is
    emptied first, so that it holds this run's steps only."""
    folder = shots_dir_of(request.node)
    shutil.rmtree(folder, ignore_errors=True)
    sessions = BrowserSessions(folder, on_missing=fail_missing)
    try:
        yield sessions
    finally:
        sessions.close(failed=request.node.stash.get(FAILED, False))
