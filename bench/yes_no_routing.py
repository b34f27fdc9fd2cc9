"""Would the untuned base model answer the yes/no questions better, the tuned adapter the rest? Computed from the
answers `bench/training_levers` recorded, no model run: for each seed of the tuned arm, its right answers on the
questions that are not polar, and the untuned model's on the polar ones.

A question is polar by its form alone, as serving would have to tell it: it opens with an auxiliary verb ("Does …",
"Can …", "Is …"). Decided on the feedback split; the test split is reported beside it.

    python -m bench.yes_no_routing [--tuned FILE --arm NAME] [--untuned FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import RESULTS, write_result
from cli.demo import SAMPLE_DATASET
from facts.stats import mcnemar_exact
from ml.optimizer import clean_dataset, split_examples
from ml.polarity_balance import polarity_of

AUXILIARIES = frozenset(
    {
        "am",
        "is",
        "are",
        "was",
        "were",
        "do",
        "does",
        "did",
        "can",
        "could",
        "will",
        "would",
        "shall",
        "should",
        "may",
        "might",
        "must",
        "has",
        "have",
        "had",
    }
)


def is_polar(question: str) -> bool:
    """Whether the question asks yes or no, by its first word."""
    words = question.split()
    return bool(words) and words[0].lower().strip(",") in AUXILIARIES


def routed(tuned_right: set[str], untuned_right: set[str], polar: set[str], ids: set[str]) -> set[str]:
    """The questions answered right when the polar ones go to the untuned model and the others to the tuned one."""
    return {i for i in ids if (i in untuned_right if i in polar else i in tuned_right)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tuned", default=str(RESULTS / "training_levers_contexts.json"))
    parser.add_argument("--arm", default="polarity_balanced+5x1@bf16-train")
    parser.add_argument("--untuned", default=str(RESULTS / "training_levers_untuned_5x1.json"))
    parser.add_argument("--out", default="yes_no_routing")
    args = parser.parse_args()
    splits = split_examples(clean_dataset(SAMPLE_DATASET, "jsonl").examples)
    tuned = [r for r in json.loads(Path(args.tuned).read_text())["runs"] if r["arm"] == args.arm]
    (untuned,) = json.loads(Path(args.untuned).read_text())["runs"]
    figures = {}
    for split in ("feedback", "test"):
        examples = getattr(splits, split)
        ids = {e.id for e in examples}
        polar = {e.id for e in examples if is_polar(e.question)}
        checked = {e.id for e in examples if polarity_of(e) is not None}
        runs, gained, lost = [], 0, 0
        for run in tuned:
            right = set(run[split]["right_ids"])
            both = routed(right, set(untuned[split]["right_ids"]), polar, ids)
            gained, lost = gained + len(both - right), lost + len(right - both)
            runs.append({"seed": run["seed"], "tuned": len(right), "routed": len(both)})
        figures[split] = {
            "questions": len(ids),
            "polar_by_form": len(polar),
            "polar_by_check": len(checked),
            "both": len(polar & checked),
            "runs": runs,
            "against_tuned": {"gained": gained, "lost": lost, "mcnemar_p": round(mcnemar_exact(gained, lost), 4)},
        }
    write_result(
        args.out, {"tuned": f"{Path(args.tuned).name}: {args.arm}", "untuned": Path(args.untuned).name, **figures}
    )


if __name__ == "__main__":
    main()
