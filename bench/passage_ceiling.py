"""How often the passages a question is asked with state its answer, before any model reads them: the share of the
sample's feedback and test questions whose passages pass the question's value-seeking fact checks
(`facts.judge.passages_state`), for each way of building a prompt's passages, K chunks retrieved for the question
and cut to the S statements nearest it (`ml.focused_context`), or whole.

A model asked with those passages cannot answer more of these questions right than this (a yes/no question cannot be
looked up in a text and is counted apart), and every wrong answer above it is a misreading. It chooses contexts on the
feedback split; the test split is reported beside it.

    python -m bench.passage_ceiling [--contexts 3x3 5x1 ...] [--out passage_ceiling]
"""

from __future__ import annotations

import argparse

from bench.common import write_result
from bench.training_levers import sample_index
from cli.demo import SAMPLE_DATASET
from facts.judge import passages_state
from knowledge.embeddings import embed
from ml.examples import Example
from ml.focused_context import focus_passages
from ml.optimizer import clean_dataset, split_examples
from schemas.checks import parse_checks

CONTEXTS = ("3xall", "3x3", "3x1", "5xall", "5x3", "5x2", "5x1")


def ceiling(examples: list[Example], passages: list[list[str]]) -> dict:
    """The questions whose passages state their answer, those whose passages do not, and those that cannot be looked
    up (only yes/no or not_contains checks)."""
    states = [passages_state(p, parse_checks(e.checks)) for e, p in zip(examples, passages, strict=True)]
    return {
        "stated": sum(1 for s in states if s is True),
        "not_stated": sum(1 for s in states if s is False),
        "cannot_tell": sum(1 for s in states if s is None),
        "questions": len(examples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contexts", nargs="+", default=list(CONTEXTS), help="KxS, or Kxall for whole chunks")
    parser.add_argument("--out", default="passage_ceiling")
    args = parser.parse_args()
    index = sample_index()
    splits = split_examples(clean_dataset(SAMPLE_DATASET, "jsonl").examples)
    figures: dict[str, dict] = {}
    for split in ("feedback", "test"):
        examples: list[Example] = getattr(splits, split)
        questions = [e.question for e in examples]
        vectors = embed(questions)
        for contexts in args.contexts:
            chunks, statements = contexts.split("x")
            found = [[h.chunk.text for h in hits] for hits in index.search(vectors, int(chunks))]
            if statements != "all":
                found = focus_passages(questions, found, embed, int(statements), vectors)
            figures.setdefault(contexts, {})[split] = ceiling(examples, found)
    write_result(args.out, {"dataset": SAMPLE_DATASET.name, "contexts": figures})


if __name__ == "__main__":
    main()
