"""Evaluation: generate answers on the feedback and test splits, score them, mine bad cases, suggest fixes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from facts.judge import judge, passages_state
from facts.stats import wilson_interval
from ml.chat import prompt_ids, training_ids
from ml.examples import Example
from ml.metrics import GradeThresholds, ScoreWeights, corpus_scores, grade, overall, score_example
from ml.optimizer import Splits
from ml.topics import group_by_topic
from schemas.checks import parse_checks
from schemas.reports import (
    CLOSED_BOOK,
    RAG,
    BadCase,
    BadCaseFollowup,
    CheckVerdict,
    EvaluationReport,
    ExampleScore,
    Headline,
    RetrievalQuality,
    Scores,
    SideBySide,
    SplitComparison,
    SplitResult,
    Suggestion,
    SuggestionGroup,
    TrainLoss,
)

HEADLINE_SPLIT = "test"
EVALUATED_SPLITS = ("feedback", "test")


@dataclass
class EvaluationConfig:
    weights: ScoreWeights = field(default_factory=ScoreWeights)
    thresholds: GradeThresholds = field(default_factory=GradeThresholds)
    max_new_tokens: int = 32
    batch_size: int = 48
    bad_case_threshold: float = 0.5  # a feedback example scoring below this overall is a bad case
    max_bad_cases: int = 24
    max_train_loss_cases: int = 8
    max_seq_length: int = 256
    side_by_side: int = 4


Progress = Callable[[str, int, int], None]  # (what, done, total)


def left_pad(prompts: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids of prompts of different lengths as one batch padded on the left, so every row ends where generation
    starts, and its attention mask."""
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention[row, width - len(ids) :] = 1
    return input_ids, attention


@torch.no_grad()
def generate_answers(
    model,
    tokenizer,
    questions: list[str],
    batch_size: int = 48,
    max_new_tokens: int = 32,
    progress: Progress | None = None,
    contexts: list[list[str]] | None = None,
    histories: list[list[dict[str, str]]] | None = None,
) -> list[str]:
    """Greedy answers, batched with left padding; with `contexts`, each question is asked with its passages, and with
    `histories` after its conversation's earlier turns. The batches keep the questions' order: batching them by
    length (near neighbours, within a padded-token budget) was measured 0.92× as fast with passages and level closed
    book on 2 cores (`bench/results/evaluation_speed.json`): the decode steps it adds cost what the padding
    saved."""
    device = next(model.parameters()).device
    model.eval()
    answers: list[str] = []
    contexts = contexts or [[] for _ in questions]
    histories = histories or [[] for _ in questions]
    for start in range(0, len(questions), batch_size):
        window = slice(start, start + batch_size)
        prompts = [
            prompt_ids(tokenizer, q, c, h)
            for q, c, h in zip(questions[window], contexts[window], histories[window], strict=True)
        ]
        input_ids, attention = left_pad(prompts, tokenizer.pad_token_id)
        width = input_ids.shape[1]
        output = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        answers.extend(tokenizer.decode(seq[width:], skip_special_tokens=True).strip() for seq in output)
        if progress:
            progress("generate", min(start + batch_size, len(questions)), len(questions))
    return answers


@torch.no_grad()
def per_example_loss(
    model, tokenizer, examples: list[Example], max_length: int = 256, batch_size: int = 16, sort_by_length: bool = True
) -> list[float]:
    """Mean answer-token loss of each example: batched forward passes, far cheaper than generating. With
    `sort_by_length` the batches hold near neighbours by length, which pad little: 1.28× faster on the demo's training
    split (`bench/evaluation_speed`); the losses are the same."""
    device = next(model.parameters()).device
    model.eval()
    pairs = [training_ids(tokenizer, e.question, e.answer, max_length, e.context or None) for e in examples]
    losses = [float("nan")] * len(examples)
    valid = {i: p for i, p in enumerate(pairs) if p is not None}
    order = sorted(valid, key=lambda i: len(valid[i][0])) if sort_by_length else list(valid)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(valid[i][0]) for i in chunk)
        ids = torch.full((len(chunk), width), tokenizer.pad_token_id, dtype=torch.long)
        labels = torch.full((len(chunk), width), -100, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            seq, lab = valid[i]
            ids[row, : len(seq)], labels[row, : len(lab)], attention[row, : len(seq)] = (
                torch.tensor(seq),
                torch.tensor(lab),
                1,
            )
        # the vocabulary projection only where an answer token is predicted: the full (batch, length, vocabulary)
        # logits of prompts that carry passages would take gigabytes
        hidden = model.get_decoder()(input_ids=ids.to(device), attention_mask=attention.to(device)).last_hidden_state[
            :, :-1
        ]
        shifted = labels[:, 1:].to(device)
        answer = shifted != -100
        token_loss = torch.nn.functional.cross_entropy(
            model.get_output_embeddings()(hidden[answer]).float(), shifted[answer], reduction="none"
        )
        rows = answer.nonzero()[:, 0]
        sums = torch.zeros(len(chunk), device=device).index_add_(0, rows, token_loss)
        counts = answer.sum(dim=1).clamp(min=1)
        for row, i in enumerate(chunk):
            losses[i] = float(sums[row] / counts[row])
    return losses


def verdict_of(example: Example, answer: str) -> tuple[bool | None, list[CheckVerdict]]:
    """Right or wrong by the example's fact checks, with each check's verdict; (None, []) when it has none."""
    if not example.checks:
        return None, []
    verdict = judge(answer, parse_checks(example.checks))
    return verdict.right, [
        CheckVerdict(check=check.model_dump(), passed=result.passed, detail=result.detail)
        for check, result in verdict.results
    ]


def fact_scores(rows: list[ExampleScore], with_passages: bool = False) -> dict:
    """The share of right answers among the judged rows, with its 95% Wilson interval (nothing when none is judged);
    `with_passages` (rag), the wrong answers whose passages state their facts (reading errors) and those whose
    passages do not (retrieval misses)."""
    judged = [r for r in rows if r.right is not None]
    if not judged:
        return {}
    right = sum(1 for r in judged if r.right)
    low, high = wilson_interval(right, len(judged))
    wrong = [r for r in judged if not r.right]
    return {
        "fact_accuracy": round(right / len(judged), 4),
        "right": right,
        "judged": len(judged),
        "fact_accuracy_interval": (round(low, 4), round(high, 4)),
        **(
            {
                "reading_errors": sum(1 for r in wrong if r.answer_in_passages is True),
                "retrieval_misses": sum(1 for r in wrong if r.answer_in_passages is False),
            }
            if with_passages
            else {}
        ),
    }


def score_split(
    name: str,
    examples: list[Example],
    predictions: list[str],
    weights: ScoreWeights,
    passages: dict[str, list[str]] | None = None,
) -> SplitResult:
    """Each answer's verdict by its fact checks and its wording scores; the share right and the corpus means. With
    `passages` (example id -> the passages it was asked with, rag), whether they state what its checks look for."""
    rows = []
    for example, got in zip(examples, predictions, strict=True):
        scores = {k: round(v, 4) for k, v in score_example(got, example.answer).items()}
        right, checks = verdict_of(example, got)
        given = passages.get(example.id) if passages is not None else None
        rows.append(
            ExampleScore(
                example_id=example.id,
                question=example.question,
                expected=example.answer,
                got=got,
                scores=scores,
                overall=round(overall(scores, weights), 4),
                right=right,
                checks=checks,
                sources=list(example.context_chunk_ids),
                answer_in_passages=passages_state(given, parse_checks(example.checks)) if given else None,
            )
        )
    totals = Scores(**corpus_scores([r.scores for r in rows], weights), **fact_scores(rows, passages is not None))
    return SplitResult(split=name, size=len(examples), scores=totals, examples=rows)


def predict_splits(
    model,
    tokenizer,
    splits: Splits,
    config: EvaluationConfig,
    progress: Progress | None = None,
    contexts: dict[str, list[str]] | None = None,
) -> dict[str, list[str]]:
    """Answers to each held-out split; with `contexts` (example id -> passages retrieved for its question), in rag
    mode.
    """
    return {
        name: generate_answers(
            model,
            tokenizer,
            [e.question for e in getattr(splits, name)],
            config.batch_size,
            config.max_new_tokens,
            progress,
            [contexts.get(e.id, []) for e in getattr(splits, name)] if contexts is not None else None,
            [e.history for e in getattr(splits, name)],
        )
        for name in EVALUATED_SPLITS
    }


FAILED_CHECK_ERRORS = {
    "polarity": "wrong_polarity",
    "number": "wrong_number",
    "not_contains": "states_a_wrong_value",
    "contains_any": "missing_fact",
    "contains_all": "missing_fact",
    "regex": "missing_fact",
}


def error_type(got: str | None, expected: str, checks: list[CheckVerdict] | None = None) -> str:
    """What went wrong: an empty answer, then the first failed fact check's kind, then a rambling answer."""
    got = got or ""
    if not got.strip():
        return "empty_answer"
    failed = next((c for c in checks or [] if not c.passed), None)
    if failed is not None:
        return FAILED_CHECK_ERRORS.get(str(failed.check.get("type")), "wrong_content")
    if len(got.split()) > 2 * len(expected.split()) + 5:
        return "too_long"
    return "wrong_content"


def is_bad(row: ExampleScore, config: EvaluationConfig) -> bool:
    """Answered wrong by its fact checks; without checks, scored below the blended threshold."""
    return not row.right if row.right is not None else row.overall < config.bad_case_threshold


def find_bad_cases(
    feedback_rows: list[ExampleScore], train: list[Example], train_losses: list[float], config: EvaluationConfig
) -> list[BadCase]:
    """Feedback examples answered wrong (the blended score ranks them, worst first) and the training examples with the
    highest loss."""
    failing = sorted((r for r in feedback_rows if is_bad(r, config)), key=lambda r: r.overall)
    cases = [
        BadCase(**r.model_dump(), split="feedback", error_type=error_type(r.got, r.expected, r.checks))
        for r in failing[: config.max_bad_cases]
    ]
    # without the training split's losses (none computed) no training example is a bad case
    losses = zip(train, train_losses, strict=False)
    ranked = sorted((pair for pair in losses if pair[1] == pair[1]), key=lambda p: -p[1])
    for example, loss in ranked[: config.max_train_loss_cases]:
        cases.append(
            BadCase(
                example_id=example.id,
                question=example.question,
                expected=example.answer,
                got=None,
                loss=round(loss, 4),
                split="train",
                error_type="high_training_loss",
            )
        )
    return cases


ACTIONS = {
    "feedback": "up-weight the training examples nearest to these failures and add validated rewrites of them",
    "train": "up-weight these training examples and add validated rewrites of them",
}


def suggest_improvements(bad_cases: list[BadCase], iteration: int) -> list[Suggestion]:
    """Group bad cases by topic and split; one structured suggestion per group, with its plain-words rendering."""
    suggestions: list[Suggestion] = []
    for split in ("feedback", "train"):
        cases = [c for c in bad_cases if c.split == split]
        for group in group_by_topic([c.question for c in cases]):
            members = [cases[i] for i in group]
            dominant = Counter(c.error_type for c in members).most_common(1)[0][0]
            label = members[0].question
            action = ACTIONS[split]
            text = (
                f"{len(members)} "
                f"{'answer' if split == 'feedback' else 'training example'}{'s' if len(members) > 1 else ''} "
                f'about topics like "{label}" '
                f"{'are mostly ' + dominant.replace('_', ' ') if split == 'feedback' else 'still have a high loss'}; "
                f"next round will {action}."
            )
            suggestions.append(
                Suggestion(
                    id=f"s{iteration}-{len(suggestions) + 1}",
                    kind="targeted_training_data",
                    split=split,
                    error_type=dominant,
                    group=SuggestionGroup(label=label, size=len(members)),
                    evidence_bad_case_ids=[c.example_id for c in members],
                    action=action,
                    text=text,
                )
            )
    return suggestions


def evaluate_predictions(
    splits: Splits,
    predictions: dict[str, list[str]],
    train_losses: list[float],
    config: EvaluationConfig,
    iteration: int,
    baseline: EvaluationReport | None = None,
    previous: EvaluationReport | None = None,
    lineage: dict[str, list[str]] | None = None,
    mode: str = CLOSED_BOOK,
    chunks: dict[str, list[str]] | None = None,
    previous_label: str = "previous",
    other_modes: dict[str, dict[str, list[str]]] | None = None,
    retrieval: dict[str, RetrievalQuality] | None = None,
    knowledge_base_version: int | None = None,
    passages: dict[str, list[str]] | None = None,
) -> EvaluationReport:
    """The evaluation report of one iteration, from the model's answers and per-example training losses.

    `predictions` are the answers in the serving `mode`, `other_modes` those in any other mode evaluated (all
    are scored; bad cases and comparisons use the serving mode). `passages` are the ones the rag mode asked each
    example with (example id -> passages): each wrong rag answer is then told a reading error or a retrieval miss.
    `baseline` and `previous` are earlier evaluation reports (the untuned model's and the last iteration's); `lineage`
    maps a bad case id to the training example ids that targeted it.
    """
    modes = {
        m: {
            name: score_split(
                name, getattr(splits, name), answers[name], config.weights, passages if m == RAG else None
            )
            for name in EVALUATED_SPLITS
        }
        for m, answers in {mode: predictions, **(other_modes or {})}.items()
    }
    results = modes[mode]
    test = results[HEADLINE_SPLIT].scores
    bad_cases = find_bad_cases(results["feedback"].examples, splits.train, train_losses, config)
    valid_losses = [x for x in train_losses if x == x]
    graded = test.fact_accuracy if test.fact_accuracy is not None else test.overall
    report = EvaluationReport(
        iteration=iteration,
        headline=Headline(
            split=HEADLINE_SPLIT,
            score=test.overall,
            grade=grade(graded, config.thresholds),
            mode=mode,
            fact_accuracy=test.fact_accuracy,
            fact_accuracy_interval=test.fact_accuracy_interval,
        ),
        modes=modes,
        retrieval=retrieval or {},
        knowledge_base_version=knowledge_base_version,
        train_loss=TrainLoss(mean=round(sum(valid_losses) / len(valid_losses), 4) if valid_losses else None),
        bad_cases=bad_cases,
        suggestions=suggest_improvements(bad_cases, iteration),
    )
    for name, other in (("baseline", baseline), (previous_label, previous)):
        if other:
            # against the other report in the same mode (a base model is evaluated in every mode the task serves in)
            report.comparison[name] = {split: compare(report, other, split, mode) for split in EVALUATED_SPLITS}
    if previous:
        report.bad_case_followup = follow_up_bad_cases(previous, results, lineage or {}, chunks or {})
    if baseline:
        base_by_id = {r.example_id: r for r in baseline.modes[mode][HEADLINE_SPLIT].examples}
        report.side_by_side = []
        for r in results[HEADLINE_SPLIT].examples[: config.side_by_side]:
            base = base_by_id.get(r.example_id)
            report.side_by_side.append(
                SideBySide(
                    split=HEADLINE_SPLIT,
                    question=r.question,
                    expected=r.expected,
                    base_answer=base.got if base else None,
                    tuned_answer=r.got,
                    base_right=base.right if base else None,
                    tuned_right=r.right,
                )
            )
    return report


def compare(report: EvaluationReport, other: EvaluationReport, split: str, mode: str) -> SplitComparison:
    """This report against another (the base model's, the previous round's) on one split, in the same mode."""
    mine, theirs = report.accuracy(split, mode), other.accuracy(split, mode)
    return SplitComparison(
        split=split,
        score=other.score(split, mode),
        delta=round(report.score(split, mode) - other.score(split, mode), 4),
        fact_accuracy=theirs,
        fact_accuracy_delta=round(mine - theirs, 4) if mine is not None and theirs is not None else None,
    )


def follow_up_bad_cases(
    previous: EvaluationReport,
    results: dict[str, SplitResult],
    lineage: dict[str, list[str]],
    chunks: dict[str, list[str]] | None = None,
) -> list[BadCaseFollowup]:
    """How each of the previous round's feedback bad cases scores now, which training examples were made for it, and
    (grounded targeting) from which chunks."""
    now = {r.example_id: r for r in results["feedback"].examples}
    rows = []
    for case in previous.bad_cases:
        if case.split != "feedback":
            continue
        after = now.get(case.example_id)
        rows.append(
            BadCaseFollowup(
                bad_case_id=case.example_id,
                split="feedback",
                question=case.question,
                before=case.overall,
                after=after.overall if after else None,
                delta=round(after.overall - case.overall, 4) if after and case.overall is not None else None,
                targeted_training_examples=lineage.get(case.example_id, []),
                chunk_ids=(chunks or {}).get(case.example_id, []),
                right_after=after.right if after else None,
            )
        )
    return rows


def chunks_by_bad_case(train: list[Example]) -> dict[str, list[str]]:
    """bad case id -> ids of the chunks the examples generated for it came from."""
    out: dict[str, list[str]] = {}
    for example in train:
        for cause in example.lineage:
            if (
                cause.get("chunk_id")
                and cause.get("bad_case_id")
                and cause["chunk_id"] not in out.setdefault(cause["bad_case_id"], [])
            ):
                out[cause["bad_case_id"]].append(cause["chunk_id"])
    return out


def lineage_by_bad_case(train: list[Example]) -> dict[str, list[str]]:
    """bad case id -> ids of the training examples up-weighted or added because of it."""
    out: dict[str, list[str]] = {}
    for example in train:
        for cause in example.lineage:
            if "bad_case_id" not in cause:  # generated from a random chunk: made for no bad case
                continue
            ids = out.setdefault(cause["bad_case_id"], [])
            if example.id not in ids:
                ids.append(example.id)
    return out
