"""Training twins whose passages state another value, answered with it: the model learns to read a value from its
passage instead of recalling the one it was trained on.

The knowledge update showed the failure (`docs/results.md`): after the web console moved from port 7410 to 7420, the
model, shown the passage that says 7420, answered 7411, the value nearest to what it had learned. Knowledge-aware
fine-tuning (KAFT, Li et al. 2022) and counterfactual contexts (Longpre et al. 2021) train on passages that contradict
what the model knows, with answers that follow the passage.

For each training row with passages whose `number` check's value (a whole number) is written in its answer and in at
least one of its passages, the twin writes another value of the same size in their place, everywhere, and in its
checks (`facts.corrections.propose`, as a document's change is written into a stale row). The question is the row's
own: only the passage tells the two apart, so recalling cannot answer both. Labels stay consistent by construction:
the twin's passage states what its answer says.
"""

from __future__ import annotations

import dataclasses
import random

from facts.corrections import propose, value_replacer
from ml.examples import Example

ORIGIN = "counterfactual"


def other_value(value: int, rng: random.Random) -> int:
    """A different whole number of about the same size: a port stays a four-digit port, a count a small count."""
    if value >= 1000:
        return value + rng.randint(11, 89)
    if value >= 20:
        return value + rng.randint(3, max(4, value // 2))
    return value + rng.randint(1, 5)


def counterfactual_twin(example: Example, rng: random.Random) -> Example | None:
    """The row with another value in its answer, passages and checks; None when it has no such value."""
    numbers = [c for c in example.checks if c.get("type") == "number"]
    if not example.context or len(numbers) != 1:
        return None
    value = float(numbers[0]["value"])
    if value != int(value) or value < 0:
        return None
    old, new = str(int(value)), str(other_value(int(value), rng))
    replace = value_replacer(old, new)
    passages = [replace(p) for p in example.context]
    if passages == example.context:  # the passages do not state it: the twin's answer would be unsupported
        return None
    proposal = propose(example.answer, example.checks, old, new, new_sentence="")
    if proposal is None:
        return None
    return dataclasses.replace(
        example,
        id=f"{example.id}-cf{new}",
        answer=proposal.answer,
        checks=proposal.checks,
        context=passages,
        origin=ORIGIN,
        weight=1,
        lineage=[*example.lineage, {"action": ORIGIN, "parent_id": example.id, "old": old, "new": new}],
    )


def with_counterfactual_twins(examples: list[Example], seed: int = 0) -> list[Example]:
    """The rows, each followed by its counterfactual twin where it has one."""
    rng = random.Random(seed)
    out: list[Example] = []
    for example in examples:
        out.append(example)
        twin = counterfactual_twin(example, rng)
        if twin is not None:
            out.append(twin)
    return out
