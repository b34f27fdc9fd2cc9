"""Rows that a new version of a document contradicts: their fact checks ask for a value the document no longer states.

The rule:
- both texts are split into sentences (a line, a list item, or a sentence within one); a sentence in only one of them
  was removed or added;
- each removed sentence is paired with the added sentence most like it (rapidfuzz), when one is alike enough; a
  removed sentence without a counterpart was dropped;
- the values a pair changes are the numbers (with their units) and the identifiers, codes and names (`facts.derive`'s
  rules) that the old sentence holds and the new one does not; a dropped sentence loses all of its values;
- a row is stale when one of its positive checks (`number`, an item of `contains_any` or `contains_all`) asks for a
  changed value, the new sentence does not satisfy that check, and the row concerns the old sentence: among the old
  document's sentences that hold the value, it is the one that shares most content words with the row's question and
  answer, and it shares at least `MIN_SHARED_WORDS` of them besides the value (words common in the document, such as
  "port" in a list of ports, do not count). So a row about another sentence that happens to hold the same number is
  left alone, and an edit that changes no value (a rewording) stales nothing.

A row with a `polarity` check (a yes/no question) is stale when the sentence it concerns (of the old document's
sentences, the one that shares most content words with its question and answer, at least `MIN_SHARED_WORDS`) now says
the opposite:
- the rewrite flips it: once the negations ("not", "no", "never", "no longer", "without", "n't", …) are taken out the
  two sentences hold the same content words, and their numbers of negations differ by an odd count ("no changes are
  lost" → "changes may be lost"); a rewording that says the same in other words ("drives are not included" → "drives
  are sold separately") has other content words, and is left alone;
- or its question states a value the sentence no longer holds ("Is the web console on port 7410?", a "yes", after
  7410 → 7420), or, for a "no", a value the sentence now holds.

`not_contains` and `regex` checks never make a row stale: they ask for no value of the document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from facts.derive import KNOWN_UNITS, identifiers, names
from facts.judge import holds, normalize, numbers_in, run_check
from schemas.checks import ContainsAll, ContainsAny, FactCheck, Number, Polarity

PAIR_SIMILARITY = 60.0  # rapidfuzz token_sort_ratio (0-100) an added sentence needs to count as a removed one's rewrite
MIN_SHARED_WORDS = 2  # content words, besides the changed value, a row must share with a sentence to concern it
COMMON_SHARE = 0.25  # a word in more of a document's sentences than this share says nothing about which one a row is on
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(`])")
_LIST_MARK = re.compile(r"^\s*(?:[-*+\u2022]|\d+[.)]|#+)\s+")
_UNIT_SPELLING = {"gb": "GB", "mb": "MB", "tb": "TB", "kb": "KB", "gib": "GiB", "mib": "MiB", "tib": "TiB"}
_WORD = re.compile(r"[a-z0-9][a-z0-9._/%$:-]*[a-z0-9%$]|[a-z0-9]")
_NEGATION = re.compile(r"\b(?:no longer|not|no|never|none|nothing|cannot|without)\b|n't\b", re.IGNORECASE)
_STOP_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an the and or but if then than of to in on at by for with from as is are was were be been being it its this "
        "that these those there here you your we our they their i me my do does did can could should would will shall "
        "may might must not no yes so such also only just about into over under after before all any each every more "
        "most other some same what which who when where why how has have had get gets",
    )
)


@dataclass(frozen=True)
class Value:
    """A value a sentence states: a number (with the unit written after it, if a known one) or a term."""

    text: str  # as shown: "7410", "$499", "4 GB", "FL-204"
    number: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class SentenceChange:
    """A removed sentence, its rewrite in the new text (None: dropped), and the values it no longer states."""

    old: str
    new: str | None
    removed: tuple[Value, ...]  # stated by `old`, not by `new`
    added: tuple[Value, ...]  # stated by `new`, not by `old`
    flipped: bool = False  # `new` says the opposite of `old` (the module's rule)


@dataclass(frozen=True)
class RowFacts:
    """What a row asks: its id, question, answer and checks."""

    row_id: str
    question: str
    answer: str
    checks: list[FactCheck]


@dataclass(frozen=True)
class StaleRow:
    """A row the new text contradicts, with the sentence and the value that changed, and what replaces them."""

    row_id: str
    question: str
    old_value: str
    new_value: str | None  # None: the sentence was dropped, or its rewrite gives no value in its place
    old_sentence: str
    new_sentence: str | None  # the proposed source of a correction


def sentences(text: str) -> list[str]:
    """The text's sentences in order, without list marks and headings' hashes, whitespace collapsed, each once."""
    found: list[str] = []
    for line in text.splitlines():
        line = _LIST_MARK.sub("", line).strip()
        for sentence in _SENTENCE_END.split(line):
            sentence = " ".join(sentence.split())
            if sentence and any(c.isalnum() for c in sentence):
                found.append(sentence)
    return list(dict.fromkeys(found))


def values_in(sentence: str) -> list[Value]:
    """The numbers written in digits (with a known unit, or `$`) and the identifiers, codes and names of a sentence."""
    found: dict[str, Value] = {}
    numbers: dict[float, str | None] = {}
    for number, unit in numbers_in(sentence, words=False):
        known = unit if unit in KNOWN_UNITS else None
        if number not in numbers or (numbers[number] is None and known):
            numbers[number] = known
    for number, written in numbers.items():
        shown = _number(number)
        text = (
            f"${shown}" if written == "$" else f"{shown} {_UNIT_SPELLING.get(written, written)}" if written else shown
        )
        found[f"#{number}"] = Value(text, number, written)
    for term in identifiers(sentence) + names(sentence):
        key = normalize(term)
        # a plain number is read above, a unit is no fact ("4.2.1" is a version: a term)
        if not re.fullmatch(r"\d+(?:[.,]\d+)?", key) and key not in KNOWN_UNITS and key not in found:
            found[key] = Value(term)
    return list(found.values())


def changed_sentences(old_text: str, new_text: str) -> list[SentenceChange]:
    """Each sentence of `old_text` missing from `new_text`, with its rewrite (if any) and the values it loses."""
    old, new = sentences(old_text), sentences(new_text)
    kept = {normalize(s) for s in new}
    before = {normalize(s) for s in old}
    removed = [s for s in old if normalize(s) not in kept]
    added = [s for s in new if normalize(s) not in before]
    changes = []
    for sentence in removed:
        match = (
            process.extractOne(sentence, added, scorer=fuzz.token_sort_ratio, score_cutoff=PAIR_SIMILARITY)
            if added
            else None
        )
        rewrite = match[0] if match else None
        old_values = values_in(sentence)
        new_values = values_in(rewrite) if rewrite else []
        changes.append(
            SentenceChange(
                sentence,
                rewrite,
                tuple(v for v in old_values if not any(_same(v, w) for w in new_values)),
                tuple(w for w in new_values if not any(_same(w, v) for v in old_values)),
                rewrite is not None and flips(sentence, rewrite),
            )
        )
    return [c for c in changes if c.removed or c.flipped]


def flips(old: str, new: str) -> bool:
    """`new` says the opposite of `old`: the same content words once their negations are taken out, and an odd
    difference in how many negations they hold."""
    if (len(_NEGATION.findall(old)) - len(_NEGATION.findall(new))) % 2 == 0:
        return False
    return _content_words(_NEGATION.sub(" ", old)) == _content_words(_NEGATION.sub(" ", new))


def stale_rows(old_text: str, new_text: str, rows: Iterable[RowFacts]) -> list[StaleRow]:
    """The rows whose checks ask for a value that `new_text` no longer states where `old_text` did (the module's rule),
    each once, with the first change that contradicts it."""
    changes = changed_sentences(old_text, new_text)
    if not changes:
        return []
    old_sentences = sentences(old_text)
    common = _common_words(old_sentences)
    stale: list[StaleRow] = []
    for row in rows:
        found = _contradiction(row, changes, old_sentences, common)
        if found is not None:
            stale.append(found)
    return stale


def _contradiction(
    row: RowFacts, changes: list[SentenceChange], old_sentences: list[str], common: set[str]
) -> StaleRow | None:
    about = _content_words(f"{row.question} {row.answer}") - common
    polar = next((c for c in row.checks if isinstance(c, Polarity)), None)
    if polar is not None:
        flipped = _flipped_answer(row, polar, about, changes, old_sentences)
        if flipped is not None:
            return flipped
    for change in changes:
        for value in change.removed:
            for check in row.checks:
                if not _asks_for(check, value):
                    continue
                if change.new is not None and run_check(check, change.new).passed:
                    continue  # the rewrite still satisfies the check: nothing contradicts it
                if _concerns(about, value, change.old, old_sentences):
                    return StaleRow(
                        row.row_id,
                        row.question,
                        value.text,
                        _replacement(value, change.removed, change.added) if change.new else None,
                        change.old,
                        change.new,
                    )
    return None


def _flipped_answer(
    row: RowFacts, polar: Polarity, about: set[str], changes: list[SentenceChange], old_sentences: list[str]
) -> StaleRow | None:
    """The yes/no row's answer is now the opposite: the sentence it concerns was flipped, or its question states a
    value the sentence lost (a "yes"), or one it gained (a "no")."""
    opposite = "no" if polar.value == "yes" else "yes"
    asked = values_in(row.question)
    for change in changes:
        if change.new is None or not _about_sentence(about, change.old, old_sentences):
            continue
        states = change.removed if polar.value == "yes" else change.added
        if change.flipped or any(_same(v, w) for v in asked for w in states):
            return StaleRow(row.row_id, row.question, polar.value, opposite, change.old, change.new)
    return None


def _about_sentence(about: set[str], sentence: str, old_sentences: list[str]) -> bool:
    """Of the old sentences, `sentence` shares the most content words with the row, and at least MIN_SHARED_WORDS."""
    score = len(about & _content_words(sentence))
    return score >= MIN_SHARED_WORDS and all(len(about & _content_words(s)) <= score for s in old_sentences)


def _asks_for(check: FactCheck, value: Value) -> bool:
    """The check requires the value: a `number` check of that number (within its tolerance), or an item of a
    `contains_any`/`contains_all` that holds it."""
    if isinstance(check, Number):
        return value.number is not None and abs(check.value - value.number) <= check.tolerance
    if isinstance(check, ContainsAny | ContainsAll):
        items = [alt for item in check.values for alt in (item if isinstance(item, list) else [item])]
        needles = [value.text] if value.number is None else [_number(value.number)]
        return any(holds(normalize(item), needle) for item in items for needle in needles)
    return False


def _concerns(about: set[str], value: Value, sentence: str, old_sentences: list[str]) -> bool:
    """The row is about `sentence`: it shares enough content words with it, and no other old sentence stating the same
    value shares more."""
    own = _content_words(value.text)

    def shared(text: str) -> int:
        return len((about & _content_words(text)) - own)

    score = shared(sentence)
    if score < MIN_SHARED_WORDS:
        return False
    rivals = [s for s in old_sentences if s != sentence and any(_same(value, v) for v in values_in(s))]
    return all(shared(s) <= score for s in rivals)


def _common_words(document: list[str]) -> set[str]:
    """Words too frequent in the document to tell its sentences apart ("port" in a list of ports): in more than
    `COMMON_SHARE` of its sentences, and more than two."""
    counts: dict[str, int] = {}
    for sentence in document:
        for word in _content_words(sentence):
            counts[word] = counts.get(word, 0) + 1
    return {w for w, n in counts.items() if n > max(2, COMMON_SHARE * len(document))}


def _replacement(value: Value, removed: tuple[Value, ...], added: tuple[Value, ...]) -> str | None:
    """The added value that takes the old one's place: of the same kind (a number of the same unit, else any number;
    a term for a term), and where a sentence changes several of a kind, the one in the same position ("F2 costs $499,
    F4 $899" → "$549 … $949": $899 becomes $949)."""

    def kind(candidates: tuple[Value, ...]) -> list[Value]:
        if value.number is None:
            return [v for v in candidates if v.number is None]
        same_unit = [v for v in candidates if v.number is not None and v.unit == value.unit]
        return same_unit or [v for v in candidates if v.number is not None]

    olds, news = kind(removed), kind(added)
    if not news:
        return None
    position = next((i for i, v in enumerate(olds) if v is value), 0)
    return news[min(position, len(news) - 1)].text


def _same(a: Value, b: Value) -> bool:
    if a.number is not None or b.number is not None:
        return a.number == b.number
    return normalize(a.text) == normalize(b.text)


def _content_words(text: str) -> set[str]:
    """Lower-case words and numbers that are not stop words, a plural's final `s` dropped ("ports" is "port")."""
    words = {w.strip(".:/-") for w in _WORD.findall(normalize(text)) if w not in _STOP_WORDS}
    return {w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words} - {""}


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def describe(stale: StaleRow) -> str:
    """One line: the value that changed and what replaces it."""
    return f"{stale.old_value} → {stale.new_value}" if stale.new_value else f"{stale.old_value} removed"
