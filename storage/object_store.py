"""ObjectStore: put/get/list/delete of byte objects and whole directories."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from core.settings import Settings


class ObjectNotFound(KeyError):
    """No object under that key."""


class ObjectStore(Protocol):
    def put_stream(self, key: str, stream: BinaryIO, length: int = -1) -> None: ...
    def get_stream(self, key: str) -> Iterator[bytes]: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def describe(self, key: str) -> str: ...


def put_bytes(store: ObjectStore, key: str, data: bytes) -> None:
    store.put_stream(key, io.BytesIO(data), len(data))


def get_bytes(store: ObjectStore, key: str) -> bytes:
    return b"".join(store.get_stream(key))


def put_file(store: ObjectStore, key: str, path: Path) -> None:
    with open(path, "rb") as fh:
        store.put_stream(key, fh, path.stat().st_size)


def get_file(store: ObjectStore, key: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        with open(tmp, "wb") as fh:
            for chunk in store.get_stream(key):
                fh.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def put_dir(store: ObjectStore, prefix: str, directory: Path) -> list[str]:
    """Upload every file under `directory` to `prefix` + its relative path."""
    keys = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        key = prefix + path.relative_to(directory).as_posix()
        put_file(store, key, path)
        keys.append(key)
    return keys


def get_dir(store: ObjectStore, prefix: str, directory: Path) -> Path:
    """Download every object under `prefix` into `directory`."""
    keys = store.list(prefix)
    if not keys:
        raise ObjectNotFound(prefix)
    for key in keys:
        get_file(store, key, directory / key[len(prefix) :])
    return directory


class LocalObjectStore:
    """Objects as files under a root directory; writes are atomic (temp file + rename)."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"key escapes the store: {key!r}")
        return path

    def put_stream(self, key: str, stream: BinaryIO, length: int = -1) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(stream, out, 1024 * 1024)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get_stream(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key)
        with open(path, "rb") as fh:
            while chunk := fh.read(1024 * 1024):
                yield chunk

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, as S3 lists them: a prefix need not end at a folder."""
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self._path(folder) if folder.strip("/") else self.root
        if not base.is_dir():
            return [prefix] if self._path(prefix.rstrip("/")).is_file() else []
        return sorted(
            key
            for p in base.rglob("*")
            if p.is_file()
            and not p.name.startswith(".upload-")
            and ((key := p.relative_to(self.root).as_posix()).startswith(prefix) or key == prefix.rstrip("/"))
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        if prefix.strip("/"):  # an empty prefix empties the store but keeps its root
            base = self._path(prefix.rstrip("/"))
            if base.is_dir():
                shutil.rmtree(base, ignore_errors=True)
        return len(keys)

    def describe(self, key: str) -> str:
        return str(self._path(key))


class S3ObjectStore:
    """Objects in a bucket of an S3-compatible server (MinIO in production), via the minio client."""

    PART_SIZE = 5 * 1024 * 1024

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str, secure: bool = False):
        from minio import Minio

        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=secure)
        self.bucket = bucket
        self.endpoint = endpoint
        if not self.client.bucket_exists(bucket):
            self.client.make_bucket(bucket)

    def put_stream(self, key: str, stream: BinaryIO, length: int = -1) -> None:
        self.client.put_object(self.bucket, key, stream, length=length, part_size=self.PART_SIZE if length < 0 else 0)

    def get_stream(self, key: str) -> Iterator[bytes]:
        from minio.error import S3Error

        try:
            response = self.client.get_object(self.bucket, key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject"):
                raise ObjectNotFound(key) from exc
            raise
        try:
            yield from response.stream(1024 * 1024)
        finally:
            response.close()
            response.release_conn()

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error:
            return False

    def list(self, prefix: str) -> list[str]:
        return sorted(o.object_name for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True))

    def delete_prefix(self, prefix: str) -> int:
        from minio.deleteobjects import DeleteObject

        keys = self.list(prefix)
        errors = list(self.client.remove_objects(self.bucket, [DeleteObject(k) for k in keys]))
        if errors:
            raise RuntimeError(f"could not delete {len(errors)} objects under {prefix}: {errors[0]}")
        return len(keys)

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


def object_store_from_settings(settings: Settings) -> ObjectStore:
    if settings.s3_endpoint:
        return S3ObjectStore(
            settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key, settings.s3_bucket, settings.s3_secure
        )
    return LocalObjectStore(settings.object_store_dir)
