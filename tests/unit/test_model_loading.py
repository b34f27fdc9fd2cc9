"""Loading models in a process: loads in many threads at once (language models, embeddings, adapters) in a fresh
process, as a worker pool's activities do; a shared model loaded once; a failed load refused during its backoff, then
tried again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from core.model_loading import ModelLoadFailed, SharedModels

THREADS_LOADING_BOTH_KINDS = textwrap.dedent("""
    import sys, threading
    from pathlib import Path
    from core.settings import configure_process_environment
    configure_process_environment()
    from knowledge.embeddings import embed
    from ml.base_model import load_model_and_tokenizer, with_adapter
    failures, tied = [], []

    def evaluate_like(i):
        try:
            if i % 2:
                embed([f"question {i}"])
            model, _ = load_model_and_tokenizer(sys.argv[1], Path(sys.argv[2]), device="cpu")
            if i % 3 == 0:
                model = with_adapter(model, Path(sys.argv[3]), merge=True)
            head = model.lm_head.weight
            tied.append(head.device.type != "meta" and head is model.model.embed_tokens.weight)
        except Exception as exc:
            failures.append(repr(exc)[:300])

    threads = [threading.Thread(target=evaluate_like, args=(i,)) for i in range(12)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print("failures", len(failures), failures[:1])
    print("tied", sum(tied), len(tied))
""")


def test_a_fresh_process_loads_language_models_embeddings_and_adapters_in_12_threads_at_once(
    tiny_model_dir, adapter_dir, tmp_path
):
    """What an evaluate or optimize worker does when activities run side by side: every load succeeds, and every model
    comes out whole (its output layer tied to its embeddings, as the checkpoint says, not left on the meta device)."""
    result = subprocess.run(
        [sys.executable, "-c", THREADS_LOADING_BOTH_KINDS, tiny_model_dir, str(tmp_path / "cache"), str(adapter_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "failures 0 []" in result.stdout, result.stdout
    assert "tied 12 12" in result.stdout, result.stdout


@pytest.fixture
def adapter_dir(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir), config).save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_shared_model_is_loaded_once_however_many_threads_ask_at_once():
    shared, calls = SharedModels(), []
    started = threading.Barrier(8)

    def load():
        calls.append(1)
        return object()

    results = []

    def ask():
        started.wait()
        results.append(shared.get("m", load))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(calls) == 1 and len({id(r) for r in results}) == 1
    assert shared.states()["m"]["state"] == "ready"


def test_a_failed_load_is_refused_with_its_error_during_its_backoff_then_tried_again_with_a_longer_one():
    clock = Clock()
    shared, attempts = SharedModels(first_backoff=1.0, max_backoff=4.0, clock=clock), []

    def flaky():
        attempts.append(clock.now)
        if len(attempts) < 4:
            raise RuntimeError("disk not mounted")
        return "model"

    with pytest.raises(ModelLoadFailed, match=r"disk not mounted.*tried again in 1 s"):
        shared.get("m", flaky)
    with pytest.raises(ModelLoadFailed, match="disk not mounted"):  # within the backoff: refused at once, not tried
        shared.get("m", flaky)
    assert len(attempts) == 1 and shared.states()["m"] == {
        "state": "failed",
        "error": "RuntimeError: disk not mounted",
        "failures": 1,
        "retry_in_seconds": 1.0,
    }
    backoffs = []
    for _ in range(2):
        clock.now += shared.retry_in("m")
        with pytest.raises(ModelLoadFailed):
            shared.get("m", flaky)
        backoffs.append(shared.retry_in("m"))
    assert backoffs == [2.0, 4.0]  # doubling, up to the maximum
    clock.now += 4.0
    assert shared.get("m", flaky) == "model" and shared.states()["m"]["state"] == "ready" and len(attempts) == 4
    assert shared.get("m", flaky) == "model" and len(attempts) == 4  # loaded once
