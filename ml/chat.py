"""One prompt format for training and generation, so the model is asked the way it was taught."""

from __future__ import annotations

SYSTEM_PROMPT = "Answer in one short sentence."


def prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of the chat prompt up to (and including) the assistant header."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Token ids of the answer followed by the end-of-turn token."""
    return tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def training_ids(tokenizer, question: str, answer: str, max_length: int) -> tuple[list[int], list[int]] | None:
    """(input ids, labels) with the loss on answer tokens only; None if the prompt leaves no room for the answer."""
    prompt, reply = prompt_ids(tokenizer, question), answer_ids(tokenizer, answer)
    if len(prompt) >= max_length - 1:
        return None
    ids = (prompt + reply)[:max_length]
    labels = ([-100] * len(prompt) + reply)[:max_length]
    return ids, labels
