"""Object storage behind one small interface: a local directory or an S3-compatible server."""

from storage.object_store import (
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    object_store_from_settings,
)

__all__ = ["LocalObjectStore", "ObjectNotFound", "ObjectStore", "S3ObjectStore", "object_store_from_settings"]
