"""Scrubbing erased text out of stored artifacts: JSON, JSON lines and text, in whatever shape they hold it.

An artifact mentions an erased row when any of its strings holds one of the row's texts (its question or its answer,
compared case-insensitively after normalising whitespace). In JSON, a list item that mentions one is dropped (an
example, a bad case, a prediction) and any other string that does is replaced by `[erased]`; in JSON lines, such a line
is dropped; in text, each occurrence is replaced. Other files (model weights) are left as they are: they are flagged,
not rewritten.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

ERASED = "[erased]"
TEXT_SUFFIXES = (".md", ".txt", ".csv")


def _normal(text: str) -> str:
    return " ".join(text.split()).casefold()


class Needles:
    """The texts to erase, normalised for comparison; texts shorter than 8 characters are ignored (a one-word answer
    would otherwise erase every mention of that word)."""

    def __init__(self, texts: list[str]):
        self.texts = sorted({_normal(t) for t in texts if len(_normal(t)) >= 8}, key=len, reverse=True)

    def mentioned_in(self, text: str) -> bool:
        normal = _normal(text)
        return any(t in normal for t in self.texts)

    def replace_in(self, text: str) -> str:
        for needle in self.texts:
            pattern = r"\s+".join(re.escape(word) for word in needle.split())
            text = re.sub(pattern, ERASED, text, flags=re.IGNORECASE)
        return text


def _mentions(value: Any, needles: Needles) -> bool:
    if isinstance(value, str):
        return needles.mentioned_in(value)
    if isinstance(value, dict):
        return any(_mentions(v, needles) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, needles) for v in value)
    return False


def scrub_json(value: Any, needles: Needles) -> Any:
    """`value` without what mentions the needles: list items dropped, other strings replaced."""
    if isinstance(value, list):
        return [scrub_json(v, needles) for v in value if not (isinstance(v, (dict, str)) and _mentions(v, needles))]
    if isinstance(value, dict):
        return {k: scrub_json(v, needles) for k, v in value.items()}
    if isinstance(value, str) and needles.mentioned_in(value):
        return needles.replace_in(value) if not needles.mentioned_in(needles.replace_in(value)) else ERASED
    return value


def scrub_blob(key: str, data: bytes, needles: Needles) -> bytes | None:
    """The blob rewritten without the needles, or None when it does not mention them (or is not text)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not needles.mentioned_in(text):
        return None
    if key.endswith(".jsonl"):
        kept = [line for line in text.splitlines() if line.strip() and not needles.mentioned_in(line)]
        return "".join(line + "\n" for line in kept).encode("utf-8")
    if key.endswith(".json"):
        try:
            return orjson.dumps(scrub_json(orjson.loads(data), needles), option=orjson.OPT_INDENT_2)
        except orjson.JSONDecodeError:
            pass
    return needles.replace_in(text).encode("utf-8")
