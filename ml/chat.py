"""One prompt format for training and generation, so the model is asked the way it was taught.

Closed book, the user turn is the question alone. With retrieval, it is the retrieved passages, numbered, then the
question, under a system prompt that says to answer from them when they hold the answer.
"""

from __future__ import annotations

SYSTEM_PROMPT = "Answer in one short sentence."
RAG_SYSTEM_PROMPT = "Answer in one short sentence. Use the context when it holds the answer."


def user_turn(question: str, context: list[str] | None = None) -> str:
    if not context:
        return question
    passages = "\n".join(f"[{number}] {text}" for number, text in enumerate(context, start=1))
    return f"Context:\n{passages}\n\nQuestion: {question}"


def prompt_messages(
    question: str, context: list[str] | None = None, history: list[dict[str, str]] | None = None
) -> list[dict[str, str]]:
    """The system prompt, the turns before the question (a conversation's), and the question with its passages."""
    return [
        {"role": "system", "content": RAG_SYSTEM_PROMPT if context else SYSTEM_PROMPT},
        *(history or []),
        {"role": "user", "content": user_turn(question, context)},
    ]


def rendered(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> list[int]:
    """The token ids of `messages` rendered by the tokenizer's chat template."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def prompt_ids(
    tokenizer, question: str, context: list[str] | None = None, history: list[dict[str, str]] | None = None
) -> list[int]:
    """Token ids of the chat prompt up to (and including) the assistant header."""
    return rendered(tokenizer, prompt_messages(question, context, history), add_generation_prompt=True)


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Token ids of the answer followed by the end-of-turn token."""
    return tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


class MaskError(ValueError):
    """The chat template does not render a conversation's prefixes as prefixes of the whole: no mask can be trusted."""


def assistant_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[list[int], list[tuple[int, int]]]:
    """The conversation's token ids, and for each assistant turn the span of its tokens: its content and its
    end-of-turn token. Each span is found by rendering the conversation one prefix at a time: up to the turn with the
    generation prompt (what the model sees before it answers), then through the turn; both must be prefixes of the
    whole conversation's rendering, or MaskError."""
    whole = rendered(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = rendered(tokenizer, messages[:i], add_generation_prompt=True)
        through = rendered(tokenizer, messages[: i + 1])
        if through[: len(before)] != before or whole[: len(through)] != through:
            raise MaskError(f"the chat template does not render turn {i} of the conversation as a prefix of the whole")
        turn = through[len(before) :]
        end = len(before) + turn.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in turn else len(through)
        spans.append((len(before), end))
    return whole, spans


def conversation_training_ids(
    tokenizer,
    history: list[dict[str, str]],
    question: str,
    answer: str,
    max_length: int,
    context: list[str] | None = None,
) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) of a conversation with the loss on every assistant turn (its earlier ones and the answer);
    None if `max_length` leaves no supervised token."""
    messages = [*prompt_messages(question, context, history), {"role": "assistant", "content": answer}]
    whole, spans = assistant_spans(tokenizer, messages)
    labels = [-100] * len(whole)
    for start, end in spans:
        labels[start:end] = whole[start:end]
    ids, labels = whole[:max_length], labels[:max_length]
    if all(label == -100 for label in labels):
        return None
    return ids, labels


def training_ids(
    tokenizer,
    question: str,
    answer: str,
    max_length: int,
    context: list[str] | None = None,
    history: list[dict[str, str]] | None = None,
) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) with the loss on answer tokens only; None if the prompt leaves no room for the answer. A
    conversation (`history`) is trained on every assistant turn (`conversation_training_ids`)."""
    if history:
        return conversation_training_ids(tokenizer, history, question, answer, max_length, context)
    prompt, reply = prompt_ids(tokenizer, question, context), answer_ids(tokenizer, answer)
    if len(prompt) >= max_length - 1:
        return None
    ids = (prompt + reply)[:max_length]
    labels = ([-100] * len(prompt) + reply)[:max_length]
    return ids, labels
