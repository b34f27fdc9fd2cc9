"""The models and the migrations agree: a database migrated to the head has exactly the tables, columns, indexes and
constraints the SQLAlchemy models declare (on SQLite and on PostgreSQL)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from db.models import Base
from db.session import get_engine, migrate


def differences(url: str) -> list:
    with get_engine(url).connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def test_a_migrated_sqlite_database_matches_the_models(tmp_path):
    url = f"sqlite:///{tmp_path / 'wlops.db'}"
    migrate(url)
    assert differences(url) == []


@pytest.mark.postgres
def test_a_migrated_postgresql_database_matches_the_models(postgres_url):
    assert differences(postgres_url) == []  # the fixture migrated it
