"""Fixtures of the serving tests: two real LoRA adapters of the tiny model."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def adapter_dirs(tiny_model_dir, tmp_path_factory):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("served-adapters")
    for i in (1, 2):
        torch.manual_seed(10 + i)
        config = LoraConfig(r=8, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config).save_pretrained(folder / f"v{i}")
    return folder
