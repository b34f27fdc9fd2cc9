"""Judging an answer by its row's fact checks: each check passes or fails with a reason; the answer is right when all
pass.

Matching is case-insensitive on normalised text. Numbers are read as digits ("7,412", "4.2", "$499") or words
("twelve", "twenty-one": `numerizer`), so "14 files" and "fourteen files" state the same number. A yes/no answer's
stance is its leading word ("Yes", "No"), else a negation in its first clause, else affirmative.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from numerizer import numerize

from schemas.checks import ContainsAll, ContainsAny, FactCheck, NotContains, Number, Polarity, Regex

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "`": "",
    }
)
# a number not glued to a letter, a code or a version ("FL-204", "v2" and "4.2.1" state no quantity), and the word after
# it, also when hyphenated ("a 15-day grace period" states 15 days)
_NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.])(?<![A-Za-z]-)(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\d.,]*\d)(?:-|\s*)([%A-Za-z$\u20ac]+)?"
)
_ARTICLE = "qxqarticle"  # glued to "a"/"an" while numerizer reads the text, so it stays a word
_YES = ("yes", "yeah", "yep", "correct", "sure", "indeed", "absolutely", "right")
_NO = ("no", "nope", "not", "never", "none", "incorrect")
_NEGATION = re.compile(
    r"\b(not|no|never|cannot|can't|won't|doesn't|don't|isn't|aren't|wasn't|weren't|didn't|hasn't|haven't|"
    r"shouldn't|couldn't|wouldn't|nor|neither)\b|n't\b"
)
# unit spellings that mean the same unit (compared after lower-casing)
UNIT_ALIASES = {
    "gb": ("gb", "gigabyte", "gigabytes", "gib"),
    "mb": ("mb", "megabyte", "megabytes", "mib"),
    "tb": ("tb", "terabyte", "terabytes", "tib"),
    "mib": ("mib", "mb"),
    "gib": ("gib", "gb"),
    "kb": ("kb", "kilobyte", "kilobytes", "kib"),
    "day": ("day", "days"),
    "days": ("day", "days"),
    "hour": ("hour", "hours", "h"),
    "hours": ("hour", "hours", "h"),
    "minute": ("minute", "minutes", "min", "mins"),
    "minutes": ("minute", "minutes", "min", "mins"),
    "second": ("second", "seconds", "s", "sec", "secs"),
    "seconds": ("second", "seconds", "s", "sec", "secs"),
    "week": ("week", "weeks"),
    "weeks": ("week", "weeks"),
    "month": ("month", "months"),
    "months": ("month", "months"),
    "year": ("year", "years"),
    "years": ("year", "years"),
    "%": ("%", "percent", "per"),
    "percent": ("%", "percent"),
}


def normalize(text: str) -> str:
    """Case-folded NFKC text with typographic quotes and dashes unified, backticks dropped and whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold().split())


@lru_cache(maxsize=4096)
def numbers_in(text: str, words: bool = True) -> tuple[tuple[float, str], ...]:
    """Every (number, the word right after it, lower case) that `text` states, in digits or (with `words`) in words;
    not ordinals ("1st", "eleventh")."""
    found = []
    spelled = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    if words:  # "a" and "an" are articles here, not the number one (numerizer reads "a conflict" as "1 conflict")
        spelled = numerize(re.sub(r"\b([Aa]n?)\b", _ARTICLE + r"\1", spelled)).replace(_ARTICLE, "")
    for match in re.finditer(r"\$\s?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)", spelled):  # "$499": the unit comes first
        found.append((float(match.group(1).replace(",", "")), "$"))
    for match in _NUMBER.finditer(spelled):
        unit = (match.group(2) or "").casefold()
        if unit not in ("st", "nd", "rd", "th"):
            found.append((float(match.group(1).replace(",", "")), unit))
    return tuple(found)


def _unit_matches(expected: str, written: str) -> bool:
    expected, written = expected.casefold(), written.casefold()
    if expected in ("$", "usd", "dollars"):
        return written in ("$", "usd", "dollar", "dollars")
    return written in UNIT_ALIASES.get(expected, (expected,)) or written.startswith(expected)


_CLOSING_VERDICT = re.compile(r"[,;:]\s*(?:so|therefore|thus|hence)?\s*(yes|no)\s*[.!]?$")


def stance(answer: str) -> str | None:
    """`yes`, `no`, or None for an empty answer: the leading word if it says yes or no, else a closing verdict ("…,
    so no."), else `no` for a negation in the first clause, else `yes` (an affirmative statement)."""
    text = normalize(answer)
    if not text:
        return None
    first = re.split(r"[\s,.;:!]+", text, maxsplit=1)[0]
    if first in _YES:
        return "yes"
    if first in _NO:
        return "no"
    closing = _CLOSING_VERDICT.search(text)
    if closing:
        return closing.group(1)
    clause = re.split(r"[,.;:!?]| but | while | although ", text, maxsplit=1)[0]
    return "no" if _NEGATION.search(clause) else "yes"


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    detail: str  # what was looked for, and what was (not) found


def holds(answer: str, value: str) -> bool:
    """`value` appears in `answer` (normalised), not as part of a longer word or number when it starts or ends with
    one.
    """
    needle = normalize(value)
    pattern = (
        (r"(?<![\w])" if needle[:1].isalnum() else "")
        + re.escape(needle)
        + (r"(?![\w])" if needle[-1:].isalnum() else "")
    )
    return re.search(pattern, answer) is not None


def run_check(check: FactCheck, answer: str) -> CheckResult:
    text = normalize(answer)
    if isinstance(check, ContainsAny):
        hit = next((v for v in check.values if holds(text, v)), None)
        return CheckResult(hit is not None, f"found {hit!r}" if hit else f"none of {check.values} found")
    if isinstance(check, ContainsAll):
        missing = [v for v in check.values if not any(holds(text, alt) for alt in (v if isinstance(v, list) else [v]))]
        return CheckResult(not missing, "all found" if not missing else f"missing {missing}")
    if isinstance(check, NotContains):
        hit = next((v for v in check.values if holds(text, v)), None)
        return CheckResult(hit is None, f"says {hit!r}" if hit else "none of them said")
    if isinstance(check, Regex):
        found = re.search(check.pattern, answer, flags=re.IGNORECASE) or re.search(
            check.pattern, text, flags=re.IGNORECASE
        )
        return CheckResult(
            found is not None, f"matched {found.group(0)!r}" if found else f"no match for /{check.pattern}/"
        )
    if isinstance(check, Number):
        stated = numbers_in(answer)
        for value, unit in stated:
            if abs(value - check.value) <= check.tolerance and (check.unit is None or _unit_matches(check.unit, unit)):
                return CheckResult(True, f"states {_number(value)}{' ' + unit if unit else ''}")
        wanted = f"{_number(check.value)}{' ' + check.unit if check.unit else ''}"
        said = ", ".join(f"{_number(v)}{' ' + u if u else ''}" for v, u in stated) or "no number"
        return CheckResult(False, f"expected {wanted}, found {said}")
    if isinstance(check, Polarity):
        position = stance(answer)
        return CheckResult(position == check.value, f"answers {position or 'nothing'}, expected {check.value}")
    raise TypeError(f"unknown check {check!r}")


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


@dataclass(frozen=True)
class Verdict:
    right: bool
    results: list[tuple[FactCheck, CheckResult]]


# the checks that look for something an answer states: the passages can be asked whether they state it too
_STATED = (ContainsAny, ContainsAll, Number, Regex)


def passages_state(passages: list[str], checks: list[FactCheck]) -> bool | None:
    """Whether the passages an answer was given state what its checks look for: every check that asks for a value
    (`contains_any`, `contains_all`, `number`, `regex`) finds it in them. A wrong answer whose passages state its
    facts is a reading error; one whose passages do not, a retrieval miss. None when there are no passages or no
    such check: a yes/no verdict (`polarity`) or a value to avoid (`not_contains`) cannot be looked up in a text."""
    stated = [check for check in checks if isinstance(check, _STATED)]
    if not passages or not stated:
        return None
    text = "\n".join(passages)
    return all(run_check(check, text).passed for check in stated)


def judge(answer: str, checks: list[FactCheck]) -> Verdict:
    """Right when the answer is not empty and every check passes; a row without checks cannot be judged right."""
    results = [(check, run_check(check, answer)) for check in checks]
    return Verdict(bool(checks) and bool(answer.strip()) and all(r.passed for _, r in results), results)
