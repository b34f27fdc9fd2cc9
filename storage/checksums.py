"""Checksums of stored folders (an adapter's files): one sha256 over each file's name (relative to the folder) and
bytes, in name order, computed alike over object storage and over a local copy, so a copy can be held to the digest
recorded when the folder was registered."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from storage.object_store import ObjectNotFound, ObjectStore


class ChecksumMismatch(Exception):
    """A copy whose files do not hash to the recorded digest: it must not be used."""

    def __init__(self, what: str, expected: str, actual: str):
        super().__init__(f"{what} failed its checksum: sha256 {actual[:16]}… where {expected[:16]}… was recorded")
        self.expected, self.actual = expected, actual


def _digest(files: Iterable[tuple[str, Iterator[bytes]]]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for name, chunks in files:
        digest.update(name.encode() + b"\0")
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def stored_digest(store: ObjectStore, prefix: str) -> tuple[str, int]:
    """(sha256, total bytes) of the objects under `prefix`; ObjectNotFound when there are none."""
    names = sorted(store.list(prefix))
    if not names:
        raise ObjectNotFound(prefix)
    return _digest((name[len(prefix) :], store.get_stream(name)) for name in names)


def folder_digest(folder: Path) -> tuple[str, int]:
    """(sha256, total bytes) of the files under a local folder, hashed as `stored_digest` hashes their originals."""
    files = sorted((p.relative_to(folder).as_posix(), p) for p in folder.rglob("*") if p.is_file())
    return _digest((name, _chunks(path)) for name, path in files)


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def verify_folder(folder: Path, expected: str, what: str) -> None:
    """ChecksumMismatch unless the folder's files hash to `expected`."""
    actual, _ = folder_digest(folder)
    if actual != expected:
        raise ChecksumMismatch(what, expected, actual)
