"""Object storage: the local directory store, the S3 store against a real moto server, directory helpers, key layout."""

from __future__ import annotations

import hashlib
import io
import os
import socket

import pytest

from storage import keys
from storage.object_store import (
    LocalObjectStore,
    ObjectNotFound,
    S3ObjectStore,
    get_bytes,
    get_dir,
    get_file,
    object_store_from_settings,
    put_bytes,
    put_dir,
    put_file,
)


class _Chunks(io.RawIOBase):
    """A non-seekable stream of unknown length, like an HTTP upload body."""

    def __init__(self, total: int, chunk: int = 256 * 1024):
        self.remaining, self.chunk, self.counter = total, chunk, 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.chunk, self.remaining)
        if n <= 0:
            return 0
        data = bytes((self.counter + i) % 251 for i in range(n))
        self.counter += n
        self.remaining -= n
        self.digest.update(data)
        buffer[:n] = data
        return n


def _expected_stream_bytes(total: int) -> bytes:
    return bytes(i % 251 for i in range(total))


# ---------------------------------------------------------------- local store


@pytest.fixture
def local(tmp_path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


def test_local_put_get_exists(local):
    put_bytes(local, "datasets/owner/d1/data.jsonl", b'{"q": 1}\n')
    assert local.exists("datasets/owner/d1/data.jsonl")
    assert not local.exists("datasets/owner/d1/other.jsonl")
    assert not local.exists("datasets/owner/d1")  # a directory is not an object
    assert get_bytes(local, "datasets/owner/d1/data.jsonl") == b'{"q": 1}\n'
    put_bytes(local, "datasets/owner/d1/data.jsonl", b"replaced")
    assert get_bytes(local, "datasets/owner/d1/data.jsonl") == b"replaced"
    assert local.describe("a/b") == str(local.root / "a" / "b")


def test_local_large_object_streams_in_chunks(local):
    data = os.urandom(3 * 1024 * 1024 + 17)
    put_bytes(local, "big/blob", data)
    chunks = list(local.get_stream("big/blob"))
    assert len(chunks) == 4 and b"".join(chunks) == data


def test_local_missing_key(local):
    with pytest.raises(ObjectNotFound):
        get_bytes(local, "nope/missing")
    assert isinstance(ObjectNotFound("k"), KeyError)


def test_local_list_and_delete_prefix(local):
    for key in (
        "models/t1/iter-1/a.bin",
        "models/t1/iter-1/sub/b.bin",
        "models/t1/iter-2/a.bin",
        "models/t2/iter-1/a.bin",
    ):
        put_bytes(local, key, key.encode())
    assert local.list("models/t1/") == [
        "models/t1/iter-1/a.bin",
        "models/t1/iter-1/sub/b.bin",
        "models/t1/iter-2/a.bin",
    ]
    assert local.list("models/t1/iter-1/sub/b.bin") == ["models/t1/iter-1/sub/b.bin"]
    assert local.list("models/t9/") == []
    assert len(local.list("")) == 4
    assert local.delete_prefix("models/t1/iter-1/") == 2
    assert local.list("models/") == ["models/t1/iter-2/a.bin", "models/t2/iter-1/a.bin"]
    assert not (local.root / "models" / "t1" / "iter-1").exists()  # the emptied directory is gone
    assert local.delete_prefix("models/t1/iter-1/") == 0


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "..", "a/../.."])
def test_local_path_traversal_is_rejected(local, key):
    with pytest.raises(ValueError, match="escapes the store"):
        put_bytes(local, key, b"x")
    with pytest.raises(ValueError):
        local.exists(key)
    assert not (local.root.parent / "x").exists()


def test_local_atomic_write_leaves_no_temp_files(local):
    put_bytes(local, "a/b/c.txt", b"hello")
    put_bytes(local, "a/b/c.txt", b"hello again")
    files = [p.name for p in local.root.rglob("*") if p.is_file()]
    assert files == ["c.txt"]


def test_local_failed_write_keeps_old_object_and_no_temp_file(local):
    put_bytes(local, "a/obj", b"old")

    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise OSError("connection reset")

    with pytest.raises(OSError, match="connection reset"):
        local.put_stream("a/obj", Broken())
    assert get_bytes(local, "a/obj") == b"old"
    assert [p.name for p in (local.root / "a").iterdir()] == ["obj"]
    assert local.list("a/") == ["a/obj"]


def test_local_list_hides_uploads_in_progress(local):
    put_bytes(local, "p/done", b"1")
    (local.root / "p" / ".upload-abc123").write_bytes(b"partial")
    assert local.list("p/") == ["p/done"]


def test_put_dir_get_dir_round_trip(local, tmp_path):
    source = tmp_path / "adapter"
    (source / "nested").mkdir(parents=True)
    (source / "adapter_config.json").write_text('{"r": 8}')
    (source / "nested" / "weights.bin").write_bytes(os.urandom(1000))
    written = put_dir(local, "models/t1/iter-1/adapter/", source)
    assert written == ["models/t1/iter-1/adapter/adapter_config.json", "models/t1/iter-1/adapter/nested/weights.bin"]
    target = get_dir(local, "models/t1/iter-1/adapter/", tmp_path / "restored")
    assert (target / "adapter_config.json").read_text() == '{"r": 8}'
    assert (target / "nested" / "weights.bin").read_bytes() == (source / "nested" / "weights.bin").read_bytes()
    assert not list(target.rglob("*.part"))
    with pytest.raises(ObjectNotFound):
        get_dir(local, "models/t1/iter-9/adapter/", tmp_path / "nothing")


def test_put_file_get_file(local, tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"\x00\x01payload")
    put_file(local, "f/in.bin", source)
    out = get_file(local, "f/in.bin", tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == b"\x00\x01payload"
    assert sorted(p.name for p in out.parent.iterdir()) == ["copy.bin"]


def test_object_store_from_settings_local(tmp_path):
    from core.settings import Settings

    store = object_store_from_settings(Settings(data_dir=tmp_path))
    assert isinstance(store, LocalObjectStore)
    assert store.root == (tmp_path / "objects").resolve()


# ---------------------------------------------------------------- S3 store on a moto server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(moto_endpoint) -> S3ObjectStore:
    return S3ObjectStore(moto_endpoint, "test", "test", "wlops-test")


def test_s3_creates_bucket_and_reconnects(moto_endpoint, s3):
    assert s3.client.bucket_exists("wlops-test")
    again = S3ObjectStore(moto_endpoint, "test", "test", "wlops-test")  # existing bucket: no error
    assert again.describe("a/b") == "s3://wlops-test/a/b"


def test_s3_put_get_exists(s3):
    put_bytes(s3, "datasets/o/d1/data.csv", b"question,answer\nQ,A\n")
    assert s3.exists("datasets/o/d1/data.csv")
    assert not s3.exists("datasets/o/d1/missing.csv")
    assert get_bytes(s3, "datasets/o/d1/data.csv") == b"question,answer\nQ,A\n"


def test_s3_streamed_upload_of_unknown_length(s3):
    total = 12 * 1024 * 1024
    stream = _Chunks(total)
    s3.put_stream("big/streamed.bin", io.BufferedReader(stream), length=-1)
    data = get_bytes(s3, "big/streamed.bin")
    assert len(data) == total
    assert hashlib.sha256(data).hexdigest() == stream.digest.hexdigest()
    assert data[:1000] == _expected_stream_bytes(1000)
    stat = s3.client.stat_object("wlops-test", "big/streamed.bin")
    assert stat.size == total
    assert "-" in stat.etag  # a multipart upload's etag is "<md5>-<parts>"
    assert stat.etag.rsplit("-", 1)[1] == "3"  # 5 MiB + 5 MiB + 2 MiB


def test_s3_list_and_delete_prefix(s3):
    for key in ("models/t1/iter-1/a", "models/t1/iter-1/sub/b", "models/t1/iter-2/a", "models/t2/iter-1/a"):
        put_bytes(s3, key, key.encode())
    assert s3.list("models/t1/") == ["models/t1/iter-1/a", "models/t1/iter-1/sub/b", "models/t1/iter-2/a"]
    assert s3.list("models/none/") == []
    assert s3.delete_prefix("models/t1/iter-1/") == 2
    assert s3.list("models/") == ["models/t1/iter-2/a", "models/t2/iter-1/a"]
    assert not s3.exists("models/t1/iter-1/a")
    assert s3.delete_prefix("models/t1/iter-1/") == 0


def test_s3_missing_key(s3):
    with pytest.raises(ObjectNotFound):
        list(s3.get_stream("does/not/exist"))


def test_s3_put_dir_get_dir_round_trip(s3, tmp_path):
    source = tmp_path / "ckpt"
    (source / "a" / "b").mkdir(parents=True)
    (source / "checkpoint.json").write_text('{"step": 10}')
    (source / "a" / "b" / "state.bin").write_bytes(b"\xff" * 4096)
    put_dir(s3, "models/t3/iter-1/ckpt/", source)
    restored = get_dir(s3, "models/t3/iter-1/ckpt/", tmp_path / "restored")
    assert (restored / "checkpoint.json").read_text() == '{"step": 10}'
    assert (restored / "a" / "b" / "state.bin").read_bytes() == b"\xff" * 4096
    with pytest.raises(ObjectNotFound):
        get_dir(s3, "models/t3/iter-2/ckpt/", tmp_path / "none")


def test_object_store_from_settings_s3(moto_endpoint, tmp_path):
    from core.settings import Settings

    store = object_store_from_settings(
        Settings(
            data_dir=tmp_path,
            s3_endpoint=moto_endpoint,
            s3_access_key="test",
            s3_secret_key="test",
            s3_bucket="wlops-settings",
        )
    )
    assert isinstance(store, S3ObjectStore)
    assert store.client.bucket_exists("wlops-settings")


# ---------------------------------------------------------------- key layout


def test_key_layout():
    assert keys.dataset_prefix("local", "ds_1") == "datasets/local/ds_1/"
    assert keys.optimized_prefix("ds-2") == "optimized/ds-2/"
    assert keys.model_prefix("task1", 3) == "models/task1/iter-3/"
    assert keys.evaluation_prefix("task1") == "evaluations/task1/"
    assert keys.evaluation_prefix("task1", 2) == "evaluations/task1/iter-2/"
    assert keys.iteration_prefixes("task1", 2) == ["models/task1/iter-2/", "evaluations/task1/iter-2/"]


@pytest.mark.parametrize("bad", ["a/b", "..", "../x", "a..b/", "", "a b", "x" * 65, "ü", "a.b"])
def test_keys_reject_unsafe_ids(bad):
    with pytest.raises(ValueError, match="not a valid id"):
        keys.dataset_prefix("local", bad)
    with pytest.raises(ValueError):
        keys.dataset_prefix(bad, "ds1")
    with pytest.raises(ValueError):
        keys.model_prefix(bad, 1)
    with pytest.raises(ValueError):
        keys.evaluation_prefix(bad, 1)
    with pytest.raises(ValueError):
        keys.optimized_prefix(bad)


def test_keys_iteration_must_be_a_number():
    with pytest.raises(ValueError):
        keys.model_prefix("t1", "1/../../x")
