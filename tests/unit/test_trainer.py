"""The training loop on a tiny random-weight model with the real tokenizer."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ml.chat import prompt_ids, training_ids
from ml.examples import Example
from ml.packed_attention import PACKED_ATTENTION
from ml.trainer import Checkpoint, TrainingInterrupted, pack, packed_loss, tokenize_examples, train_lora
from schemas.workflow_io import Hyperparameters

EXAMPLES = [
    Example(question=f"What port does service {i} use?", answer=f"Service {i} listens on port {7400 + i}.")
    for i in range(12)
]
HP = Hyperparameters(
    max_steps=6, batch_size=4, epochs=3, lora_dropout=0.0, learning_rate=1e-3, max_seq_length=64, seed=3
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def fresh_model(tiny_model_dir):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def test_loss_is_on_answer_tokens_only(tokenizer):
    ids, labels = training_ids(tokenizer, "What port?", "Port 7410.", 64)
    n_prompt = len(prompt_ids(tokenizer, "What port?"))
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and ids[-1] == tokenizer.eos_token_id


def test_packed_batch_loss_equals_the_unpacked_token_average(tiny_model_dir, tokenizer):
    """Each example attends only to itself and logits are computed only where an answer token is
    predicted, so packing changes nothing but speed."""
    model = fresh_model(tiny_model_dir).eval()
    rows = tokenize_examples(tokenizer, EXAMPLES[:4], 64)
    batch = pack(rows)
    assert batch.input_ids.shape == (1, sum(len(ids) for ids, _ in rows))  # no padding at all
    assert batch.cu_seq_lens.tolist()[-1] == batch.tokens and len(batch.cu_seq_lens) == 5
    with torch.no_grad():
        total = count = 0
        for ids, labels in rows:  # transformers' own shifted loss, one example at a time, default attention
            n = sum(1 for x in labels[1:] if x != -100)
            total += (
                float(model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels]), use_cache=False).loss) * n
            )
            count += n
        model.set_attn_implementation(PACKED_ATTENTION)
        packed = float(packed_loss(model, batch))
    assert len(batch.targets) == count
    assert packed == pytest.approx(total / count, rel=1e-4)


def test_packed_attention_without_segments_is_plain_sdpa(tiny_model_dir, tokenizer):
    """Generation and evaluation keep working on a model switched to the packed implementation."""
    model = fresh_model(tiny_model_dir).eval()
    inputs = tokenizer(["What port does service 3 use?", "Hi"], return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        reference = model(**inputs).logits
        model.set_attn_implementation(PACKED_ATTENTION)
        packed = model(**inputs).logits
    assert torch.allclose(reference, packed, atol=1e-5)


def test_an_interrupted_run_resumed_from_its_checkpoint_ends_where_an_uninterrupted_one_does(
    tiny_model_dir, tokenizer, tmp_path
):
    straight = train_lora(
        fresh_model(tiny_model_dir), tokenizer, EXAMPLES, HP, tmp_path / "straight", checkpoint_every=100
    )

    stop_at = {"step": 0}

    def stop_after_three() -> bool:
        return stop_at["step"] >= 3

    def count(progress) -> None:
        stop_at["step"] = progress.step

    with pytest.raises(TrainingInterrupted) as stopped:
        train_lora(
            fresh_model(tiny_model_dir),
            tokenizer,
            EXAMPLES,
            HP,
            tmp_path / "first",
            checkpoint_dir=tmp_path / "ckpt",
            checkpoint_every=100,
            on_progress=count,
            should_stop=stop_after_three,
        )
    assert stopped.value.step == 3 and Checkpoint.load_state(tmp_path / "ckpt").step == 3
    resumed = train_lora(
        fresh_model(tiny_model_dir),
        tokenizer,
        EXAMPLES,
        HP,
        tmp_path / "resumed",
        resume_from=tmp_path / "ckpt",
        checkpoint_every=100,
    )

    assert resumed.resumed_from_step == 3 and resumed.steps == straight.steps == 6
    assert [loss for _, loss in resumed.loss_curve] == pytest.approx(
        [loss for _, loss in straight.loss_curve], rel=1e-4
    )
    from safetensors.torch import load_file

    a, b = (
        load_file(tmp_path / "straight" / "adapter_model.safetensors"),
        load_file(tmp_path / "resumed" / "adapter_model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_reduces_the_loss_on_what_it_trains_in_either_precision(
    tiny_model_dir, tokenizer, tmp_path, precision
):
    hp = Hyperparameters(max_steps=30, batch_size=4, epochs=20, learning_rate=1e-2, max_seq_length=64, lora_dropout=0.0)
    summary = train_lora(
        fresh_model(tiny_model_dir),
        tokenizer,
        EXAMPLES,
        hp,
        tmp_path / "adapter",
        checkpoint_every=100,
        precision=precision,
    )
    losses = [loss for _, loss in summary.loss_curve]
    # a random-weight model moves slowly under LoRA, but it must move down
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3, losses
    assert summary.steps == 30 and summary.useful_tokens > 0
    assert summary.precision == precision
    # bf16 autocast keeps the weights in fp32: what is saved loads like any adapter
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(tmp_path / "adapter" / "adapter_model.safetensors").values()} == {torch.float32}


@pytest.mark.parametrize(
    ("lora_targets", "layers"),
    [
        ("attention", {"q_proj", "k_proj", "v_proj", "o_proj"}),
        ("all_linear", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    ],
)
def test_lora_targets_choose_the_layers_that_carry_the_adapter(
    tiny_model_dir, tokenizer, tmp_path, lora_targets, layers
):
    import json

    from safetensors.torch import load_file

    hp = Hyperparameters(
        max_steps=12, batch_size=4, epochs=20, learning_rate=1e-2, max_seq_length=64, lora_targets=lora_targets
    )
    summary = train_lora(fresh_model(tiny_model_dir), tokenizer, EXAMPLES, hp, tmp_path / "adapter")
    losses = [loss for _, loss in summary.loss_curve]
    assert losses[-1] < losses[0], losses
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert {key.split(".")[-3] for key in saved if "lora_B" in key} == layers
    # MLP adapters are trained, not just added: their B matrices (zero at the start) have moved
    assert all(saved[key].abs().sum() > 0 for key in saved if "lora_B" in key)
    assert set(json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["target_modules"]) == layers


def test_a_hyperparameter_outside_its_choices_is_refused_by_name():
    with pytest.raises(ValueError, match="lora_targets must be one of"):
        Hyperparameters(lora_targets="mlp").validated()


def test_per_example_loss_equals_transformers_own_loss_with_and_without_passages(tiny_model_dir, tokenizer):
    """Batched with padding, and projected to the vocabulary only where an answer token is predicted: each
    example's loss is still the model's own mean answer-token loss of that example alone."""
    from ml.evaluator import per_example_loss

    model = fresh_model(tiny_model_dir).eval()
    passages = [
        ["Service 3 listens on port 7403.", "Service 9 listens on port 7409."],
        [],
        ["Ports are in the 74xx range."],
    ]
    examples = [Example(e.question, e.answer, context=passages[i % 3]) for i, e in enumerate(EXAMPLES[:7])]
    got = per_example_loss(model, tokenizer, examples, max_length=128, batch_size=3)
    for example, loss in zip(examples, got, strict=True):
        ids, labels = training_ids(tokenizer, example.question, example.answer, 128, example.context or None)
        with torch.no_grad():
            expected = model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()
        assert loss == pytest.approx(expected, rel=1e-4, abs=1e-5)
    too_long = Example("q?" * 200, "a")
    # NaN
    assert (
        per_example_loss(model, tokenizer, [too_long], max_length=64)[0]
        != per_example_loss(model, tokenizer, [too_long], max_length=64)[0]
    )


def test_the_loop_logs_step_loss_and_speed_every_few_steps_and_at_the_end(tiny_model_dir, tokenizer, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ml.trainer")
    train_lora(
        fresh_model(tiny_model_dir), tokenizer, EXAMPLES, HP, tmp_path / "logged", checkpoint_every=100, log_every=4
    )
    steps = [r for r in caplog.records if r.name == "ml.trainer" and hasattr(r, "step")]
    assert [r.step for r in steps] == [4, 6]  # every 4th step, and the last of 6
    assert all(r.total_steps == 6 and r.loss > 0 and r.tokens_per_second > 0 for r in steps)
    assert steps[0].getMessage().startswith("step 4/6 loss ")


def test_balanced_yes_no_rows_give_the_rarer_answer_the_steps_it_lacks(tiny_model_dir, tokenizer, tmp_path):
    def polar(question: str, answer: str) -> Example:
        return Example(question, f"{answer.capitalize()}.", checks=[{"type": "polarity", "value": answer}])

    examples = [polar(f"Does port {p} sync?", "yes") for p in (7410, 7411, 7412)] + [polar("Is it Windows?", "no")]
    examples += EXAMPLES[:2]
    for balanced, steps, added in ((False, 6, 0), (True, 8, 2)):
        hp = Hyperparameters(batch_size=1, epochs=1, max_seq_length=64, balance_yes_no=balanced)
        summary = train_lora(fresh_model(tiny_model_dir), tokenizer, examples, hp, tmp_path / f"{balanced}")
        assert (summary.total_steps, summary.yes_no_copies_added) == (steps, added)
