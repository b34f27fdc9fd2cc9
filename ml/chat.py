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


def prompt_ids(tokenizer, question: str, context: list[str] | None = None) -> list[int]:
    """Token ids of the chat prompt up to (and including) the assistant header."""
    messages = [
        {"role": "system", "content": RAG_SYSTEM_PROMPT if context else SYSTEM_PROMPT},
        {"role": "user", "content": user_turn(question, context)},
    ]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Token ids of the answer followed by the end-of-turn token."""
    return tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def training_ids(
    tokenizer, question: str, answer: str, max_length: int, context: list[str] | None = None
) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) with the loss on answer tokens only; None if the prompt leaves no room for the answer."""
    prompt, reply = prompt_ids(tokenizer, question, context), answer_ids(tokenizer, answer)
    if len(prompt) >= max_length - 1:
        return None
    ids = (prompt + reply)[:max_length]
    labels = ([-100] * len(prompt) + reply)[:max_length]
    return ids, labels
