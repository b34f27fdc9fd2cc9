"""Chunks sized in the embedding model's tokens, split where the structure allows.

Each section of a document is split by semchunk, which cuts at the most meaningful boundary that keeps a chunk
under the size (blank lines, then line breaks, then sentence ends, then words), so a list item or a sentence
is split only when it alone exceeds the size. Overlap is added on the same boundaries: a chunk starts with
the last whole lines or sentences of the chunk before it, up to `overlap_tokens`, never in mid-sentence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from knowledge.documents import ParsedDocument

TokenCounter = Callable[[str], int]

# Where a chunk may begin: after a line break, or after a sentence's end and its space.
BOUNDARY = re.compile(r"(?<=\n)|(?<=[.!?])\s+")


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_tokens: int = 160  # room for the heading path within the embedding model's 256 word pieces
    overlap_tokens: int = 32


@dataclass
class TextChunk:
    ordinal: int  # position of the chunk in its document
    heading_path: list[str]
    text: str
    start: int  # character span in ParsedDocument.text
    end: int


def chunk_document(
    document: ParsedDocument, count_tokens: TokenCounter, config: ChunkingConfig = ChunkingConfig()
) -> list[TextChunk]:
    """The document's chunks in order, each inside one section and carrying that section's heading path."""
    chunker = _chunker(count_tokens, config.chunk_tokens)
    chunks: list[TextChunk] = []
    for section in document.sections:
        body = document.text[section.start : section.end]
        _, spans = chunker(body, offsets=True)
        previous_end = None
        for start, end in spans:
            if previous_end is not None and config.overlap_tokens > 0:
                start = _overlap_start(body, start, previous_end, count_tokens, config.overlap_tokens)
            previous_end = end
            text = body[start:end].strip()
            if text:
                lead = len(body[start:end]) - len(body[start:end].lstrip())
                chunks.append(
                    TextChunk(
                        len(chunks),
                        list(section.heading_path),
                        text,
                        section.start + start + lead,
                        section.start + start + lead + len(text),
                    )
                )
    return chunks


def _overlap_start(body: str, start: int, previous_end: int, count_tokens: TokenCounter, budget: int) -> int:
    """The earliest line or sentence boundary before `start` whose text up to the previous chunk's end fits the
    budget.
    """
    for match in BOUNDARY.finditer(body, max(0, start - 8 * budget), start):  # a word piece is rarely over 8 characters
        if match.end() < start and count_tokens(body[match.end() : previous_end]) <= budget:
            return match.end()
    return start


@lru_cache(maxsize=8)
def _chunker(count_tokens: TokenCounter, chunk_tokens: int):
    import semchunk

    return semchunk.chunkerify(count_tokens, chunk_size=chunk_tokens)


def embedding_text(heading_path: list[str], text: str) -> str:
    """What is embedded for a chunk: its heading path first, so a chunk of a list under "Network ports" is found by
    "port".
    """
    return " > ".join(heading_path) + "\n" + text if heading_path else text
