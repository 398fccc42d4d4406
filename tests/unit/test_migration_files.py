from __future__ import annotations

from pathlib import Path

import pytest

from projections.migrate import migration_files


def test_repository_migrations_are_numbered_in_order() -> None:
    names = [p.name for p in migration_files()]
    assert names, "migrations/ holds no SQL file"
    assert names == sorted(names)
    assert names[0].startswith("0001_")


def test_misnamed_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "second.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"second\.sql"):
        migration_files(tmp_path)


def test_duplicate_number_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match="share a number"):
        migration_files(tmp_path)
