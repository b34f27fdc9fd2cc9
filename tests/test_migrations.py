"""The models and the migrations agree: a database migrated to the head has exactly the tables, columns, indexes and
constraints the SQLAlchemy models declare (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from db.models import Base
from db.session import get_engine, migrate


def differences(url: str) -> list:
    with get_engine(url).connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def fk_key(constraint) -> tuple:
    return constraint.parent.name, tuple(c.name for c in constraint.columns), constraint.referred_table.name


def test_a_migrated_sqlite_database_matches_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'wlops.db'}"
    migrate(url)
    diffs = differences(url)
    # SQLAlchemy does not read ON DELETE from a reference SQLite added with its column (ALTER TABLE ... ADD COLUMN):
    # such a pair differs only in that option, which is checked below with SQLite's own PRAGMA instead
    removed = {fk_key(d[1]) for d in diffs if d[0] == "remove_fk"}
    options_only = {fk_key(d[1]) for d in diffs if d[0] == "add_fk"} & removed
    assert [d for d in diffs if not (d[0] in ("add_fk", "remove_fk") and fk_key(d[1]) in options_only)] == []
    with get_engine(url).connect() as connection:
        for table, columns, _ in options_only:
            declared = next(
                fk
                for fk in Base.metadata.tables[table].foreign_key_constraints
                if tuple(c.name for c in fk.columns) == columns
            )
            actual = {row[3]: row[6] for row in connection.execute(text(f"PRAGMA foreign_key_list({table})"))}
            assert actual[columns[0]] == declared.ondelete, (table, columns)


@pytest.mark.postgres
def test_a_migrated_postgresql_database_matches_the_models(postgres_url):
    assert differences(postgres_url) == []  # the fixture migrated it
