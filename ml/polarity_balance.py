"""Yes/no training rows weighted so that training sees each answer as often as the other, so that "Yes" stops being
the safe guess.

The shipped sample answers 62 of its yes/no questions "Yes" and 24 "No"; a model tuned on it answers "Yes" to every
held-out yes/no question whose passage says otherwise ("Does the FerroLink server run on Windows?" → "Yes, …"). Here
no row is written or removed: the rows of the rarer answer get more copies (`Example.weight`, what training sees),
spread evenly over them, until both answers are trained equally often. A row's answer is the `polarity` check it
carries, the reviewed one or one derived from an answer that begins "Yes" or "No".
"""

from __future__ import annotations

import dataclasses

from ml.examples import Example


def polarity_of(example: Example) -> str | None:
    """The yes/no answer `example`'s checks require (`yes` | `no`), or None for a row that is not a yes/no question."""
    for check in example.checks:
        if check.get("type") == "polarity":
            return str(check["value"])
    return None


def balance_polarity(examples: list[Example]) -> list[Example]:
    """`examples` with the rows of the rarer yes/no answer given extra copies, so that the copies of each answer are
    equal (to within one row); the order and every other row are unchanged. Nothing to balance (one answer absent, or
    already even) returns the rows as they are."""
    by_answer: dict[str, list[int]] = {"yes": [], "no": []}
    for i, example in enumerate(examples):
        answer = polarity_of(example)
        if answer in by_answer:
            by_answer[answer].append(i)
    copies = {answer: sum(examples[i].copies for i in rows) for answer, rows in by_answer.items()}
    rare, common = sorted(by_answer, key=lambda answer: copies[answer])
    if not by_answer[rare] or copies[rare] >= copies[common]:
        return list(examples)
    missing = copies[common] - copies[rare]
    share, extra = divmod(missing, len(by_answer[rare]))
    out = list(examples)
    for n, i in enumerate(by_answer[rare]):
        added = share + (1 if n < extra else 0)
        if added:
            out[i] = dataclasses.replace(examples[i], weight=examples[i].copies + added)
    return out
