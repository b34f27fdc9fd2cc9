"""Fixtures of the serving tests: two real LoRA adapters of the tiny model."""

from __future__ import annotations

import pytest

from testkit.model import random_adapters


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("served-adapters")
    random_adapters(tiny_model_dir, folder, ["v1", "v2"], seed=11)
    return folder
