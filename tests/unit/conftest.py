"""Fixtures of the unit tests: the shipped sample dataset, fixture files, the offline embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DATASET = REPO_ROOT / "data" / "sample" / "ferrolink_faq.jsonl"


@pytest.fixture(scope="session")
def sample_dataset() -> Path:
    assert SAMPLE_DATASET.is_file(), f"missing sample dataset {SAMPLE_DATASET}"
    return SAMPLE_DATASET


@pytest.fixture(scope="package", autouse=True)
def single_torch_thread():
    """MiniLM on a few short texts is ~20x faster with one thread when the CPUs are shared with other work."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def embedder():
    """The real offline MiniLM embedder (loaded once per session)."""
    from knowledge.embeddings import embed

    return embed


@pytest.fixture
def write_file(tmp_path):
    """Write text (or bytes) to a file under tmp_path and return its path."""

    def write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    return write
