"""A tiny model to run the real code on: a 2-layer Llama with random weights and SmolLM2's real tokenizer."""

from __future__ import annotations

from pathlib import Path

# Hyperparameters that make the tiny model's training a few seconds long.
TINY_HYPERPARAMETERS = {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3, "max_seq_length": 96}


def build_tiny_model(folder: Path) -> Path:
    """Save the tiny model and its tokenizer to `folder` (the tests' `tiny_model_dir`): real code paths, fast."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from ml.base_model import SMOLLM2_GGUF, smollm2_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_GGUF)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
