"""Timestamps: every stored one is UTC."""

from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; every stored one is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
