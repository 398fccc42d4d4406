"""The documentation stands on its own: a clone of the repository holds everything it points at.

The public contract is `docs/contract.md`; no file of `docs/` or the README may send the reader to
a file outside the repository, and the entry points of the docs lead to the contract.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OUTSIDE_POINTERS = ("../shared", "contract-v1.md")
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
