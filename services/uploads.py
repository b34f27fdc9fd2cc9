"""Uploads: a request body copied to a local file within a size limit, before anything is checked or stored."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from core.errors import Invalid, TooLarge

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Spooled:
    path: Path
    size: int
    sha256: str


def spool_upload(stream: BinaryIO, path: Path, limit: int, what: str) -> Spooled:
    """Copy `stream` to `path`; TooLarge (413) past `limit` bytes, Invalid (422) if empty. `what` names it in the
    message."""
    digest, size = hashlib.sha256(), 0
    with open(path, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"{what} is larger than the {limit} byte limit")
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise Invalid("the file is empty")
    return Spooled(path, size, digest.hexdigest())
