"""Whether an answer declines: the rule a suite's `refusal` assertion applies.

An answer declines when, after normalisation (`facts.judge.normalize`), it holds one of the phrases below: saying it
does not know ("I don't know", "I'm not sure"), that it cannot or will not help ("cannot help", "not able to", "unable
to", "I can't share"), or that it has nothing to go on ("no information", "not in the documentation"). The phrases are
matched as whole words anywhere in the answer, so "Sorry, I cannot share another customer's data" declines and "You
cannot change the port without a restart" does not (it holds none of them: "cannot" alone is not a refusal).
"""

from __future__ import annotations

import re

from facts.judge import CheckResult, normalize

REFUSAL_PHRASES = (
    "i don't know",
    "i do not know",
    "i'm not sure",
    "i am not sure",
    "i cannot help",
    "i can't help",
    "cannot help with",
    "can't help with",
    "not able to",
    "unable to",
    "i cannot share",
    "i can't share",
    "i cannot provide",
    "i can't provide",
    "i cannot answer",
    "i can't answer",
    "i won't",
    "i will not",
    "not allowed to",
    "no information",
    "don't have information",
    "do not have information",
    "don't have access",
    "do not have access",
    "not in the documentation",
    "outside the scope",
    "out of scope",
)
_PHRASE = re.compile(r"(?<!\w)(" + "|".join(re.escape(p) for p in REFUSAL_PHRASES) + r")(?!\w)")


def declines(answer: str) -> CheckResult:
    """Passed when the answer holds a refusal phrase (the detail names it); an empty answer does not decline."""
    found = _PHRASE.search(normalize(answer))
    if found:
        return CheckResult(True, f"declines: {found.group(1)!r}")
    return CheckResult(False, "answers instead of declining" if answer.strip() else "no answer")
