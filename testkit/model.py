"""A tiny model to run the real code on: a 2-layer Llama with random weights and SmolLM2's real tokenizer."""

from __future__ import annotations

from pathlib import Path

# Hyperparameters that make the tiny model's training a few seconds long.
TINY_HYPERPARAMETERS = {"max_steps": 6, "batch_size": 4, "learning_rate": 1e-3, "max_seq_length": 96}


def build_tiny_model(folder: Path, initializer_range: float = 0.02) -> Path:
    """Save the tiny model and its tokenizer to `folder` (the tests' `tiny_model_dir`): real code paths, fast.

    At the default initializer range its attention is nearly uniform and greedy decoding repeats one token whatever the
    prompt or the positions; at 0.2 (`lively_model_dir`) each answer depends on its prompt, its positions and its
    cache, which is what a test of the decode loop's bookkeeping needs to fail on a mistake."""
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
        initializer_range=initializer_range,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def random_adapters(
    base_dir: Path | str,
    folder: Path,
    names: list[str],
    *,
    seed: int,
    rank: int = 8,
    alpha: int = 64,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
) -> list[Path]:
    """LoRA adapters of the model in `base_dir` with random, non-zero weights (so each changes the model's answers),
    saved as `folder / name`; adapter i is drawn from `seed + i`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    paths = []
    for i, name in enumerate(names):
        torch.manual_seed(seed + i)
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(target_modules), init_lora_weights=False)
        get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir), config).save_pretrained(str(folder / name))
        paths.append(folder / name)
    return paths


def build_tiny_gemma(folder: Path, tokenizer_dir: Path | str, sliding_window: int = 8) -> Path:
    """A 2-layer Gemma 3 with random weights (larger ones, as the lively tiny model's) and the real Gemma tokenizer of
    `tokenizer_dir`: its first layer attends through a sliding window of `sliding_window` tokens, the second to the
    whole sequence, as Gemma 3 270M's layers do (window 512), so the decode loop meets both kinds of attention. Its
    greedy answers change with the prompt, the positions and the window."""
    import torch
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,
        tie_word_embeddings=False,  # tied, one token of the 262k dominates and greedy answers repeat it
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
