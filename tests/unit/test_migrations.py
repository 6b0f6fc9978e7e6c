"""Migration files: named NNNN_name.sql, numbered once each, and read in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common import db


def _write(directory: Path, *names: str) -> None:
    for name in names:
        (directory / name).write_text(f"-- {name}\nSELECT 1;\n")


def test_the_shipped_migrations_are_well_named_and_start_at_one() -> None:
    migrations = db.known_migrations()
    assert migrations, "no migrations shipped"
    assert migrations[0].version == 1
    versions = [m.version for m in migrations]
    assert versions == sorted(set(versions))
    assert db.latest_known_version() == versions[-1]


def test_migrations_are_read_in_numeric_order_and_may_leave_gaps(tmp_path: Path) -> None:
    _write(tmp_path, "0010_later.sql", "0001_first.sql", "0003_third.sql")
    found = db.known_migrations(tmp_path)
    assert [(m.version, m.name) for m in found] == [(1, "first"), (3, "third"), (10, "later")]
    assert found[0].sql.startswith("-- 0001_first.sql")


@pytest.mark.parametrize("bad", ["1_short.sql", "0001-dash.sql", "0001_Upper.sql", "abcd_name.sql"])
def test_a_badly_named_migration_is_refused_by_name(tmp_path: Path, bad: str) -> None:
    _write(tmp_path, "0001_ok.sql", bad)
    with pytest.raises(RuntimeError, match=f"{bad} is not named NNNN_name.sql"):
        db.known_migrations(tmp_path)


def test_two_migrations_with_one_number_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "0002_a.sql", "0002_b.sql")
    with pytest.raises(RuntimeError, match="two migrations share a number"):
        db.known_migrations(tmp_path)


def test_files_that_are_not_sql_are_ignored(tmp_path: Path) -> None:
    _write(tmp_path, "0001_ok.sql")
    (tmp_path / "README.md").write_text("notes")
    assert [m.version for m in db.known_migrations(tmp_path)] == [1]
