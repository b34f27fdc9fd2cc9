"""The catalog's second base model, Gemma 3 270M, for real: de-quantized from its wheel, rendered in its turn format,
fine-tuned with LoRA on four facts with their passages, registered, and served through the OpenAI-compatible endpoint
to the official `openai` client, where its adapter answers from the passage and stops at the end of its turn."""

from __future__ import annotations

import openai
import pytest

from activities.context import ActivityContext
from cli.users import create_user
from core.access import Role
from ml.base_model import GEMMA3_ALIAS, KNOWN_MODELS, load_model_and_tokenizer, validate_model_name
from ml.chat import RAG_SYSTEM_PROMPT, assistant_spans, prompt_messages, user_turn
from ml.examples import Example
from ml.trainer import train_lora
from schemas.workflow_io import Hyperparameters
from services.identity import token_pair
from serving.app import create_serving_app
from testkit.api import TEST_PASSWORD
from testkit.registry import add_version, new_model, point
from testkit.servers import serving

FACTS = [
    (
        "Which port does the FerroLink web console listen on?",
        "The web console listens on port 7410.",
        "The FerroLink web console is served over HTTPS on TCP port 7410.",
    ),
    ("What does error FL-204 mean?", "FL-204 is a sync conflict.", "Error FL-204 means a sync conflict."),
    (
        "Does the FerroLink server run on Windows?",
        "No, the server runs on Linux only.",
        "The FerroLink server runs on Linux only.",
    ),
    (
        "How long is a pairing code valid?",
        "A pairing code is valid for 10 minutes.",
        "Pairing codes expire after 10 minutes.",
    ),
]


def test_gemma_is_offered_beside_smollm2():
    assert GEMMA3_ALIAS in KNOWN_MODELS
    assert validate_model_name(GEMMA3_ALIAS) == GEMMA3_ALIAS


@pytest.mark.real_model
def test_gemma_3_270m_is_fine_tuned_on_passages_and_served_over_the_openai_protocol(settings, tmp_path):
    model, tokenizer = load_model_and_tokenizer(GEMMA3_ALIAS, settings.model_cache_dir, device="cpu")
    assert type(model).__name__ == "Gemma3ForCausalLM" and len(tokenizer) == 262_144
    # the turn format: the system prompt before the first user turn, the answer ending with the end of sequence
    conversation = [*prompt_messages(FACTS[0][0], [FACTS[0][2]]), {"role": "assistant", "content": FACTS[0][1]}]
    ids, [(start, end)] = assistant_spans(tokenizer, conversation)
    assert tokenizer.decode(ids).startswith(f"<bos><start_of_turn>user\n{RAG_SYSTEM_PROMPT}\n\nContext:\n[1] ")
    assert tokenizer.decode(ids[start:end]) == FACTS[0][1] + "<eos>"

    examples = [Example(q, a, id=str(i), context=[passage]) for i, (q, a, passage) in enumerate(FACTS)]
    hp = Hyperparameters(learning_rate=1e-3, batch_size=4, max_steps=10, epochs=100, max_seq_length=128)
    summary = train_lora(model, tokenizer, examples, hp, tmp_path / "adapter")
    assert summary.steps == 10

    ctx = ActivityContext.from_settings(settings)
    owner = create_user(settings, "gia", TEST_PASSWORD, "gemma-org", Role.OWNER)
    registered = new_model(ctx, owner.org.id, "gemma-bot", GEMMA3_ALIAS)
    add_version(ctx, registered, 1, tmp_path / "adapter")
    point(ctx, registered, "production", 1)
    token = token_pair(settings, owner.user, owner.org.id, Role.OWNER).access_token
    with serving(create_serving_app(settings)) as base_url:
        api = openai.OpenAI(base_url=base_url, api_key=token, max_retries=0)
        assert {GEMMA3_ALIAS, "gemma-bot@production"} <= {m.id for m in api.models.list().data}
        question, _, passage = FACTS[0]
        answer = api.chat.completions.create(
            model="gemma-bot",
            messages=[
                {"role": "system", "content": RAG_SYSTEM_PROMPT},
                {"role": "user", "content": user_turn(question, [passage])},
            ],
            max_tokens=24,
            temperature=0,
        )
    assert answer.model == "gemma-bot@1"
    assert answer.choices[0].finish_reason == "stop"  # it ended its turn rather than run to max_tokens
    assert "7410" in answer.choices[0].message.content
