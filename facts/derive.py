"""Checks derived from a reference answer, for rows that carry none; each is marked `derived`, for a person to review.

The rules, in order:
- a reference that begins "Yes" or "No" answers a yes/no question: its polarity is the fact asked, and the only check;
- numbers written in digits, with their units ("4 GB", "48 hours", "$499", "40%"), that the question does not state
  (numbers in words, "one sync pass", are mostly incidental); times of day ("02:00") as text;
- identifiers and codes: error codes (`FL-204`), paths (`/etc/ferrolink/ferro.toml`), command-line flags (`--once`),
  versions (`4.2.1`, `TLS 1.3`), file names (`ferro.toml`), names with digits or inner capitals (`XChaCha20-Poly1305`,
  `BLAKE3`), snake_case settings (`data_dir`), words in backticks or quotes;
- capitalised names that the question does not contain (`Tallinn`, `TOTP`), not a sentence's first word;
terms in `common` (what most of a dataset's references mention, such as the product's own name) are context, not facts.
A reference from which nothing can be derived gets a `contains_all` of its longest words, which a person should review.
"""

from __future__ import annotations

import re

from facts.judge import normalize, numbers_in
from schemas.checks import ContainsAll, FactCheck, Number, Polarity

KNOWN_UNITS = (
    "gb",
    "mb",
    "tb",
    "kb",
    "gib",
    "mib",
    "tib",
    "%",
    "percent",
    "day",
    "days",
    "hour",
    "hours",
    "minute",
    "minutes",
    "second",
    "seconds",
    "week",
    "weeks",
    "month",
    "months",
    "year",
    "years",
    "$",
)
_CODE_PATTERNS = (
    r"\b[A-Z]{1,5}-\d{2,5}\b",  # error codes: FL-204
    # paths: /etc/x/y, ~/Library/Logs, /metrics
    r"(?<![\w/])(?:~|%\w+%)?(?:/[\w.%\-]+){2,}/?|(?<!\w)/[a-z][\w.\-]+(?=[\s,.;]|$)",
    r"(?<!\w)--[a-z][\w-]*",  # flags: --once
    r"\b\d+\.\d+(?:\.\d+)+\b",  # versions: 4.2.1
    r"\b[\w-]+\.(?:toml|yaml|yml|json|log|service|gz|conf|ini|txt|md|pdf|html)\b",  # file names
    r"\b[A-Za-z]+\d+[\w-]*\b|\b[A-Z][a-z]+[A-Z][\w-]*\b|\b[A-Z]{2,}\d*\b",  # XChaCha20-Poly1305, BLAKE3, FerroBox, TOTP
    r"\b[a-z]+_[a-z_]+\b",  # settings: data_dir
    r"`([^`]+)`|\"([^\"]+)\"",  # quoted
)
_TIME = r"\b\d{1,2}:\d{2}\b"
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}(?:\s[A-Z][a-z]+)*\b")
_STOP = {
    "yes",
    "no",
    "the",
    "and",
    "for",
    "with",
    "from",
    "that",
    "this",
    "your",
    "which",
    "when",
    "then",
    "than",
    "into",
    "only",
    "each",
    "every",
    "after",
    "before",
    "there",
    "their",
    "they",
    "them",
    "will",
    "would",
    "should",
    "could",
    "also",
    "does",
    "about",
    "while",
    "where",
    "what",
    "have",
    "has",
    "are",
    "were",
    "been",
    "being",
    "can",
    "not",
}


def derive_checks(question: str, reference: str, common: frozenset[str] = frozenset()) -> list[FactCheck]:
    """Checks for `reference` as the answer to `question`, each marked derived (see the module's rules)."""
    text = reference.strip()
    first = re.split(r"[\s,.;:!]+", normalize(text), maxsplit=1)[0] if text else ""
    if first in ("yes", "no"):
        return [Polarity(value=first, derived=True)]
    asked = normalize(question)
    checks: list[FactCheck] = []
    stated = {value for value, _ in numbers_in(question)}
    seen: set[float] = set()
    times = re.findall(_TIME, text)
    for value, unit in numbers_in(re.sub(_TIME, " ", text), words=False):
        if value in stated or value in seen:
            continue
        seen.add(value)
        checks.append(Number(value=value, unit=unit if unit in KNOWN_UNITS else None, derived=True))
    terms = times + identifiers(re.sub(_TIME, " ", text)) + names(text)
    terms = [
        t
        for t in dict.fromkeys(terms)
        if normalize(t) not in asked
        and normalize(t) not in common
        and not _is_number(t)
        and t.casefold() not in KNOWN_UNITS
    ]
    if terms:
        checks.append(ContainsAll(values=terms[:4], derived=True))
    if not checks:
        words = sorted(
            {
                w.casefold(): w
                for w in re.findall(r"[A-Za-z][\w-]{3,}", text)
                if w.casefold() not in _STOP and w.casefold() not in asked
            }.values(),
            key=lambda w: (-len(w), w),
        )
        if words:
            checks.append(ContainsAll(values=words[:2], derived=True))
    return checks


def identifiers(text: str) -> list[str]:
    """The identifiers and codes `text` holds (the module's list), the longest of overlapping ones."""
    found: list[str] = []
    for pattern in _CODE_PATTERNS:
        for match in re.finditer(pattern, text):
            value = next((g for g in match.groups() if g), None) if match.groups() else match.group(0)
            value = (value or match.group(0)).strip().rstrip(".,;")
            if len(value) >= 2 and not any(value in other and value != other for other in found):
                found = [f for f in found if f not in value] + [value]
    return found


def names(text: str) -> list[str]:
    """Capitalised names in `text`, not its first word nor a sentence's."""
    return [m.group(0) for m in _CAPITALISED.finditer(text) if m.group(0).casefold() not in _STOP]


def _is_number(term: str) -> bool:
    return re.fullmatch(r"\d+(?:[.,]\d+)?", term) is not None  # "4.2.1" is a version, kept as an identifier


def common_terms(references: list[str], share: float = 0.1) -> frozenset[str]:
    """Terms (identifiers and names, normalised) found in at least `share` of the references: a dataset's context."""
    counts: dict[str, int] = {}
    for reference in references:
        for term in {normalize(t) for t in identifiers(reference) + names(reference)}:
            counts[term] = counts.get(term, 0) + 1
    return frozenset(t for t, n in counts.items() if n >= max(2, share * len(references)))
