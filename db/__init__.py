"""Metadata database: SQLAlchemy models, sessions and Alembic migrations."""
