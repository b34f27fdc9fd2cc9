"""Fact checks on a release's live traffic: an answer whose question matches one the release's versions know the facts
of (the rows of their locked splits that carry checks, and the cases with checks of the blocking suites the release
ran) is judged right or wrong by those checks, per arm. So a candidate that answers wrong, without errors and without
being rated down, fails its step (`ml.release.judge`). A question matches when its MiniLM embedding is at least
`KNOWN_MATCH` similar to a known one's; the nearest known question's checks judge the answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ModelVersion, Release, Suite
from facts.judge import judge, normalize
from ml.release import CANDIDATE, CURRENT, fact_figures
from schemas.checks import FactCheck, parse_checks
from services import suites
from storage.object_store import ObjectNotFound, ObjectStore, get_bytes
from suites.shadow import SAME_QUESTION

KNOWN_MATCH = SAME_QUESTION  # cosine similarity of a real question to a known one, for its checks to judge it
Embedder = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class KnownQuestion:
    question: str
    checks: list[FactCheck]


def known_questions(session: Session, store: ObjectStore, release: Release) -> list[KnownQuestion]:
    """The questions with checks in both versions' locked splits and the blocking suites the release ran, each once."""
    versions = session.scalars(
        select(ModelVersion).where(
            ModelVersion.model_id == release.model_id,
            ModelVersion.version.in_([release.current_version, release.candidate_version]),
        )
    )
    found: dict[str, KnownQuestion] = {}
    for key in sorted({v.splits_key for v in versions if v.splits_key}):
        try:
            splits = json.loads(get_bytes(store, key))
        except ObjectNotFound:
            continue
        for example in (e for name in ("train", "feedback", "test") for e in splits.get(name, [])):
            if example.get("checks"):
                _add(found, example["question"], parse_checks(example["checks"]))
    for run in suites.release_runs(session, release.id):
        suite = session.get_one(Suite, run.suite_id)
        if suite.blocking:
            for case in suites.cases_of(suite):
                if case.checks:
                    _add(found, case.question, case.checks)
    return list(found.values())


def _add(found: dict[str, KnownQuestion], question: str, checks: list[FactCheck]) -> None:
    found.setdefault(normalize(question), KnownQuestion(question, checks))


def judged_traffic(
    known: list[KnownQuestion],
    answers: Iterable[tuple[str, str, str]],
    embed: Embedder,
    similarity: float = KNOWN_MATCH,
) -> dict[str, dict]:
    """Per arm (current, candidate), `ml.release.fact_figures` of its answers (arm, question, answer) whose question
    matches a known one, judged by that one's checks."""
    answers = list(answers)
    verdicts: dict[str, list[bool]] = {CURRENT: [], CANDIDATE: []}
    if known and answers:
        scores = embed([a[1] for a in answers]) @ embed([k.question for k in known]).T
        for (arm, _, answer), row in zip(answers, scores, strict=True):
            nearest = int(np.argmax(row))
            if row[nearest] >= similarity and arm in verdicts:
                verdicts[arm].append(judge(answer, known[nearest].checks).right)
    return {arm: fact_figures(found) for arm, found in verdicts.items()}
