"""The documentation stands on its own: a clone of the repository holds everything it points at.

The public contract is `docs/contract.md`; no file of `docs/` or the README may send the reader to
a file outside the repository, the entry points of the docs lead to the contract, and every file
or module of the project that a page names (`gateway/ws/handlers.py`, `schemas.frames`) exists, so
that a move of code that forgets its docs fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OUTSIDE_POINTERS = ("../shared", "contract-v1.md", "design.md")
"""How a pointer to the contract's copy outside the repository is written."""
LEAD_TO_CONTRACT = ("README.md", "docs/swagger.yaml", "docs/swagger.json", "docs/asyncapi.yaml", "docs/websocket.md")
"""The files a reader opens first; each names `docs/contract.md`."""


def documentation_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*") if p.is_file())]


@pytest.mark.parametrize("path", documentation_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_points_at_nothing_outside_the_repository(path: Path) -> None:
    text = path.read_text(encoding="utf-8", errors="replace")
    found = [pointer for pointer in OUTSIDE_POINTERS if pointer in text]
    assert not found, f"{path.relative_to(ROOT)} mentions {found}: point at docs/contract.md instead"


def test_the_contract_is_in_the_repository() -> None:
    assert (DOCS / "contract.md").is_file()


@pytest.mark.parametrize("name", LEAD_TO_CONTRACT)
def test_leads_to_the_contract(name: str) -> None:
    assert "docs/contract.md" in (ROOT / name).read_text(encoding="utf-8"), f"{name} does not name docs/contract.md"


PACKAGES = ("config", "schemas", "streams", "projections", "gateway", "runtime", "console")
PROJECT_FOLDERS = frozenset((*PACKAGES, "tests", "docs", "scripts", "bench", "migrations"))
TEST_FOLDERS = frozenset(("unit", "integration", "e2e", "chaos"))
"""Pages name tests relative to `tests/` (`unit/test_settings.py`)."""
GENERATED = ("bench/results/", "tests/browser/screenshots/", "tests/chaos/results/")
"""Written by a run, not kept in the repository."""
PATH_NAME = re.compile(r"`([\w.\-]+(?:/[\w.\-]+)+/?)`")
MODULE_NAME = re.compile(rf"`((?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)`")


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def named_path(name: str) -> Path | None:
    """The file or folder a page's `name` stands for, or None if it is not one of the project's."""
    top = name.split("/", 1)[0]
    if name.startswith(GENERATED):
        return None
    if top in PROJECT_FOLDERS:
        return ROOT / name
    if top in TEST_FOLDERS:
        return ROOT / "tests" / name
    return None


def module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def defines(source: Path | None, name: str) -> bool:
    if source is None:
        return False
    return re.search(rf"^(?:def |class |async def )?{name}\b", source.read_text(), re.MULTILINE) is not None


def named_in_code(name: str) -> bool:
    """A logger's name (`gateway.access`) is a string of the code, not a module."""
    package = ROOT / name.split(".", 1)[0]
    return any(f'"{name}"' in path.read_text() for path in package.rglob("*.py"))


def module_exists(name: str) -> bool:
    """`a.b.c` is a module or package, or a name defined in one (`schemas.models.direct_chat_id`)."""
    *owner, last = name.split(".")
    return module_file([*owner, last]) is not None or defines(module_file(owner), last) or named_in_code(name)


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_named_file_and_module_exists(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    paths = (named_path(match) for match in PATH_NAME.findall(text))
    missing = [str(path.relative_to(ROOT)) for path in paths if path is not None and not path.exists()]
    missing += [name for name in MODULE_NAME.findall(text) if not module_exists(name)]
    assert not missing, f"{page.relative_to(ROOT)} names what the repository does not hold: {missing}"
