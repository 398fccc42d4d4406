"""The rooms of `docs/architecture.md` hold: each top-level package imports only the project's
packages its row names, so `streams/`, `projections/` and `gateway/` agree only through `schemas/`
(and Kafka), and `schemas/` imports nothing of the project."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAY_IMPORT: dict[str, frozenset[str]] = {
    "schemas": frozenset(),
    "config": frozenset({"schemas"}),
    "runtime": frozenset({"schemas", "config", "console"}),
    "console": frozenset({"schemas", "config", "runtime", "projections"}),
    "streams": frozenset({"schemas", "config", "runtime"}),
    "projections": frozenset({"schemas", "config", "runtime"}),
    "gateway": frozenset({"schemas", "config", "runtime"}),
}
"""The table "Rooms" of docs/architecture.md: change both together."""
PROJECT = frozenset((*MAY_IMPORT, "tests", "bench", "scripts"))


def imported_packages(path: Path) -> set[str]:
    """The top-level names `path` imports (absolute imports only; relative ones stay in the room)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("room", sorted(MAY_IMPORT))
def test_a_room_imports_only_what_its_row_allows(room: str) -> None:
    allowed = MAY_IMPORT[room] | {room}
    wrong = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / room).rglob("*.py"))
        for name in imported_packages(path) & PROJECT
        if name not in allowed
    }
    assert not wrong, sorted(wrong)
