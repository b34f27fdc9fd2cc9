"""Evaluation reports from given predictions and losses, improvement suggestions, and the task report."""

from __future__ import annotations

import math

import pytest

from ml.evaluator import (
    ACTIONS,
    EvaluationConfig,
    error_type,
    evaluate_predictions,
    find_bad_cases,
    follow_up_bad_cases,
    lineage_by_bad_case,
    score_split,
    suggest_improvements,
)
from ml.examples import Example
from ml.metrics import METRIC_NAMES
from ml.optimizer import Splits
from ml.report import build_task_report, plot_report, render_markdown
from schemas.reports import RAG, BadCase, EvaluationReport, ExampleScore, SideBySide, StaleRowNote, TaskInfo, TaskReport

TRAIN = [
    Example("How do I reset my FerroLink password?", "Open Settings > Account and choose Reset password."),
    Example("Does FerroLink keep monthly backups?", "Yes, monthly snapshots are retained for 12 months."),
    Example("What is the default log level?", "The default log level is info."),
]
FEEDBACK = [
    Example("Which TCP port does the FerroLink agent listen on?", "The agent listens on port 7400."),
    Example("How much does the Pro plan cost per month?", "Pro costs $8 per user per month."),
    Example("How can I reset a forgotten FerroLink password?", "Use Reset password on the Account page."),
]
TEST = [
    Example("Do pairing codes expire?", "Yes, pairing codes expire after 10 minutes."),
    Example("Is there an education discount?", "Yes, schools receive a 40% discount."),
]
# 28 words: too long
LONG_WRONG = (
    "FerroLink is a peer to peer file synchronization tool that supports Linux macOS and Windows "
    "and many other platforms such as FreeBSD and Android and iOS tablets too"
)

GOOD_PREDICTIONS = {
    "feedback": [FEEDBACK[0].answer, "", LONG_WRONG],
    "test": [TEST[0].answer, ""],
}
EMPTY_PREDICTIONS = {"feedback": ["", "", ""], "test": ["", ""]}
TRAIN_LOSSES = [0.5, float("nan"), 2.0]


def _row(example_id: str, question: str, expected: str, got: str, score: float) -> ExampleScore:
    return ExampleScore(example_id=example_id, question=question, expected=expected, got=got, scores={}, overall=score)


@pytest.fixture
def splits() -> Splits:
    return Splits(train=list(TRAIN), feedback=list(FEEDBACK), test=list(TEST))


@pytest.fixture
def config() -> EvaluationConfig:
    return EvaluationConfig()


# ---------------------------------------------------------------- scoring and bad cases


def test_score_split_rows(config):
    result = score_split("test", TEST, [TEST[0].answer, ""], config.weights)
    first, second = result.examples
    assert first.example_id == TEST[0].id and first.got == TEST[0].answer and first.expected == TEST[0].answer
    assert first.scores == {"exact_match": 1.0, "token_f1": 1.0, "bleu": 1.0, "rouge_l": 1.0}
    assert first.overall == 1.0
    assert second.scores == {name: 0.0 for name in METRIC_NAMES} and second.overall == 0.0
    assert result.scores.model_dump(exclude_none=True) == {
        "exact_match": 0.5,
        "token_f1": 0.5,
        "bleu": 0.5,
        "rouge_l": 0.5,
        "overall": 0.5,
    }
    assert (result.split, result.size) == ("test", 2)


def test_wrong_answers_asked_with_passages_are_told_misread_or_not_retrieved(config):
    port = Example("Which port does the agent listen on?", "Port 7400.", checks=[{"type": "number", "value": 7400}])
    price = Example("What does Pro cost?", "$8 per user.", checks=[{"type": "number", "value": 8, "unit": "$"}])
    polar = Example("Do codes expire?", "Yes, after 10 minutes.", checks=[{"type": "polarity", "value": "yes"}])
    examples = [port, price, polar]
    passages = {
        port.id: ["The agent listens on port 7400."],
        price.id: ["Team costs $12."],
        polar.id: ["Codes expire."],
    }
    result = score_split("test", examples, ["Port 7401.", "$12.", "No."], config.weights, passages)
    assert [r.right for r in result.examples] == [False, False, False]
    assert [r.answer_in_passages for r in result.examples] == [True, False, None]
    assert (result.scores.reading_errors, result.scores.retrieval_misses) == (1, 1)
    # a right answer is not an error of either kind; closed book (no passages) tells neither
    right = score_split("test", examples, ["Port 7400.", "$12.", "No."], config.weights, passages)
    assert (right.scores.reading_errors, right.scores.retrieval_misses) == (0, 1)
    closed = score_split("test", examples, ["Port 7401.", "$12.", "No."], config.weights)
    assert closed.scores.reading_errors is None and {r.answer_in_passages for r in closed.examples} == {None}


def test_score_split_length_mismatch(config):
    with pytest.raises(ValueError):
        score_split("test", TEST, ["only one"], config.weights)


@pytest.mark.parametrize(
    ("got", "expected_type"),
    [
        ("", "empty_answer"),
        ("   ", "empty_answer"),
        (None, "empty_answer"),
        ("w " * 12, "too_long"),  # 12 words > 2 * 3 + 5
        ("w " * 11, "wrong_content"),  # exactly 2 * 3 + 5 words is not yet too long
        ("wrong words", "wrong_content"),
    ],
)
def test_error_type(got, expected_type):
    assert error_type(got, "a b c") == expected_type


def test_find_bad_cases(config):
    rows = [
        _row("a", "qa", "x", "y", 0.49),
        _row("b", "qb", "x", "", 0.1),
        _row("c", "qc", "x", "x", 0.5),  # at the threshold: fine
    ]
    cases = find_bad_cases(rows, TRAIN, TRAIN_LOSSES, config)
    assert [(c.example_id, c.split, c.error_type) for c in cases] == [
        ("b", "feedback", "empty_answer"),
        ("a", "feedback", "wrong_content"),
        (TRAIN[2].id, "train", "high_training_loss"),
        (TRAIN[0].id, "train", "high_training_loss"),
    ]
    assert cases[2].loss == 2.0 and cases[2].got is None and cases[2].expected == TRAIN[2].answer
    assert cases[0].overall == 0.1 and cases[0].scores == {}


def test_find_bad_cases_caps(config):
    rows = [_row(str(i), "q", "x", "", i / 100) for i in range(10)]
    capped = EvaluationConfig(max_bad_cases=3, max_train_loss_cases=1)
    cases = find_bad_cases(rows, TRAIN, TRAIN_LOSSES, capped)
    assert [c.example_id for c in cases] == ["0", "1", "2", TRAIN[2].id]


# ---------------------------------------------------------------- the evaluation report


def test_evaluate_predictions_report(splits, config):
    report = evaluate_predictions(splits, GOOD_PREDICTIONS, TRAIN_LOSSES, config, iteration=1)
    assert report.iteration == 1
    assert report.headline.model_dump(exclude_none=True) == {
        "split": "test",
        "score": 0.5,
        "grade": "ACCEPTABLE",
        "mode": "closed_book",
    }
    assert set(report.modes) == {"closed_book"} and report.splits is report.modes["closed_book"]
    assert report.splits["test"].size == 2 and report.splits["feedback"].size == 3
    assert report.splits["feedback"].split == "feedback"
    assert report.train_loss.model_dump() == {"split": "train", "mean": 1.25}  # NaN losses are left out
    assert report.comparison == {} and report.bad_case_followup == [] and report.side_by_side == []

    bad = report.bad_cases
    feedback_bad = [c for c in bad if c.split == "feedback"]
    assert [c.example_id for c in feedback_bad] == [FEEDBACK[1].id, FEEDBACK[2].id]
    assert [c.error_type for c in feedback_bad] == ["empty_answer", "too_long"]
    assert all(c.overall < config.bad_case_threshold for c in feedback_bad)
    assert FEEDBACK[0].id not in {c.example_id for c in bad}  # the correct answer is not a bad case
    train_bad = [c for c in bad if c.split == "train"]
    assert [(c.example_id, c.loss) for c in train_bad] == [(TRAIN[2].id, 2.0), (TRAIN[0].id, 0.5)]
    # test-split examples are never mined for bad cases
    assert not {c.example_id for c in bad} & {e.id for e in TEST}

    suggestions = report.suggestions
    assert {i for s in suggestions for i in s.evidence_bad_case_ids} == {c.example_id for c in bad}
    # the stored form reads back as the same report
    assert EvaluationReport.model_validate_json(report.model_dump_json()) == report


def test_evaluate_predictions_all_losses_nan(splits, config):
    report = evaluate_predictions(splits, GOOD_PREDICTIONS, [math.nan] * 3, config, iteration=1)
    assert report.train_loss.mean is None
    assert all(c.split == "feedback" for c in report.bad_cases)


def test_comparison_followup_and_side_by_side(splits, config):
    baseline = evaluate_predictions(splits, EMPTY_PREDICTIONS, TRAIN_LOSSES, config, iteration=0)
    previous = evaluate_predictions(splits, EMPTY_PREDICTIONS, TRAIN_LOSSES, config, iteration=1)
    assert [c.example_id for c in previous.bad_cases if c.split == "feedback"] == [e.id for e in FEEDBACK]

    rewrite = Example(
        "Quick question: How do I reset my FerroLink password?",
        TRAIN[0].answer,
        origin="rewrite",
        lineage=[{"bad_case_id": FEEDBACK[2].id, "action": "rewrite"}],
    )
    upweighted = Example(
        TRAIN[0].question,
        TRAIN[0].answer,
        weight=2,
        lineage=[
            {"bad_case_id": FEEDBACK[2].id, "action": "upweight"},
            {"bad_case_id": FEEDBACK[2].id, "action": "upweight"},
            {"bad_case_id": FEEDBACK[0].id, "action": "upweight"},
        ],
    )
    lineage = lineage_by_bad_case([upweighted, TRAIN[1], rewrite])
    assert lineage == {FEEDBACK[2].id: [upweighted.id, rewrite.id], FEEDBACK[0].id: [upweighted.id]}

    report = evaluate_predictions(
        splits,
        GOOD_PREDICTIONS,
        TRAIN_LOSSES,
        config,
        iteration=2,
        baseline=baseline,
        previous=previous,
        lineage=lineage,
    )
    feedback_now = report.score("feedback")
    assert report.comparison["baseline"]["test"].model_dump(exclude_none=True) == {
        "split": "test",
        "score": 0.0,
        "delta": 0.5,
    }
    assert report.comparison["previous"]["test"].model_dump(exclude_none=True) == {
        "split": "test",
        "score": 0.0,
        "delta": 0.5,
    }
    assert report.comparison["baseline"]["feedback"].delta == pytest.approx(feedback_now)
    assert feedback_now > 0

    followup = {f.bad_case_id: f for f in report.bad_case_followup}
    assert set(followup) == {e.id for e in FEEDBACK}  # only feedback bad cases are followed up
    fixed = followup[FEEDBACK[0].id]
    assert (fixed.before, fixed.after, fixed.delta) == (0.0, 1.0, 1.0)
    assert fixed.targeted_training_examples == [upweighted.id]
    assert followup[FEEDBACK[1].id].delta == 0.0 and followup[FEEDBACK[1].id].targeted_training_examples == []
    assert followup[FEEDBACK[2].id].targeted_training_examples == [upweighted.id, rewrite.id]
    assert all(f.split == "feedback" for f in report.bad_case_followup)

    assert [row.model_dump(exclude_none=True) for row in report.side_by_side] == [
        {
            "split": "test",
            "question": TEST[0].question,
            "expected": TEST[0].answer,
            "base_answer": "",
            "tuned_answer": TEST[0].answer,
        },
        {
            "split": "test",
            "question": TEST[1].question,
            "expected": TEST[1].answer,
            "base_answer": "",
            "tuned_answer": "",
        },
    ]


def test_follow_up_of_a_case_no_longer_evaluated(config):
    previous = evaluate_predictions(
        Splits(train=[], feedback=[], test=[]), {"feedback": [], "test": []}, [], config, iteration=1
    )
    previous.bad_cases = [
        BadCase(
            example_id="gone",
            question="q",
            expected="x",
            got="",
            overall=0.2,
            split="feedback",
            error_type="empty_answer",
        ),
        BadCase(
            example_id="t",
            question="q",
            expected="x",
            got=None,
            loss=2.0,
            split="train",
            error_type="high_training_loss",
        ),
    ]
    results = {name: score_split(name, [], [], config.weights) for name in ("feedback", "test")}
    assert [f.model_dump(exclude_none=True) for f in follow_up_bad_cases(previous, results, {})] == [
        {
            "bad_case_id": "gone",
            "split": "feedback",
            "question": "q",
            "before": 0.2,
            "targeted_training_examples": [],
            "chunk_ids": [],
        },
    ]


# ---------------------------------------------------------------- suggestions


def _case(question: str, split: str, kind: str, example_id: str) -> BadCase:
    return BadCase(example_id=example_id, question=question, expected="x", got=None, split=split, error_type=kind)


def test_suggest_improvements_structure():
    cases = [
        _case("How do I reset my FerroLink password?", "feedback", "wrong_content", "f1"),
        _case("How much does the Pro plan cost per month?", "feedback", "empty_answer", "f2"),
        _case("How can I reset my FerroLink password?", "feedback", "wrong_content", "f3"),
        _case("Which TCP port does the FerroLink agent listen on?", "train", "high_training_loss", "t1"),
    ]
    suggestions = suggest_improvements(cases, iteration=3)
    assert [s.id for s in suggestions] == [f"s3-{i}" for i in range(1, len(suggestions) + 1)]
    assert [s.split for s in suggestions] == ["feedback", "feedback", "train"]  # feedback groups first
    for s in suggestions:
        assert set(s.model_dump()) == {
            "id",
            "kind",
            "split",
            "error_type",
            "group",
            "evidence_bad_case_ids",
            "action",
            "text",
        }
        assert s.kind == "targeted_training_data"
        assert s.action == ACTIONS[s.split]
        assert s.group.size == len(s.evidence_bad_case_ids)
        assert s.group.label in s.text and s.action in s.text
    evidence = [i for s in suggestions for i in s.evidence_bad_case_ids]
    assert sorted(evidence) == ["f1", "f2", "f3", "t1"]  # every bad case in exactly one suggestion

    password = next(s for s in suggestions if "f1" in s.evidence_bad_case_ids)
    assert sorted(password.evidence_bad_case_ids) == ["f1", "f3"]  # paraphrases share a topic
    assert password.error_type == "wrong_content"
    assert password.text.startswith("2 answers about topics like") and "mostly wrong content" in password.text
    single = next(s for s in suggestions if s.evidence_bad_case_ids == ["f2"])
    assert single.error_type == "empty_answer"
    assert single.text.startswith('1 answer about topics like "How much does the Pro plan cost per month?"')
    train = suggestions[-1]
    assert train.error_type == "high_training_loss" and "still have a high loss" in train.text
    assert train.text.startswith("1 training example about")


def test_suggest_improvements_of_nothing():
    assert suggest_improvements([], iteration=1) == []


# ---------------------------------------------------------------- task report


def _training(steps: int, resumed: int, start_loss: float) -> dict:
    return {
        "steps": steps,
        "total_steps": steps,
        "resumed_from_step": resumed,
        "seconds": 12.5,
        "tokens_per_second": 800.0,
        "useful_tokens": 10000,
        "device": "cpu",
        "precision": "bf16",
        "examples": 3,
        "loss_curve": [[s, round(start_loss / s, 4)] for s in range(1, steps + 1)],
    }


@pytest.fixture
def task_report(splits, config):
    baseline = evaluate_predictions(splits, EMPTY_PREDICTIONS, TRAIN_LOSSES, config, iteration=0)
    first = evaluate_predictions(
        splits, {"feedback": ["", "", LONG_WRONG], "test": ["", ""]}, TRAIN_LOSSES, config, 1, baseline=baseline
    )
    lineage = {FEEDBACK[0].id: [TRAIN[0].id]}
    second = evaluate_predictions(
        splits, GOOD_PREDICTIONS, TRAIN_LOSSES, config, 2, baseline=baseline, previous=first, lineage=lineage
    )
    second.adapter_key = "models/t1/iter-2/adapter/"
    task = TaskInfo(
        task_id="t1", name="FerroLink | FAQ", mode="CONTINUOUS", model_name="tiny-model", stop_reason="max iterations"
    )
    return build_task_report(task, baseline, [first, second], [_training(5, 0, 2.0), _training(4, 2, 1.0)])


def test_build_task_report(task_report):
    assert task_report.task.task_id == "t1"
    assert task_report.baseline.split == "test" and task_report.baseline.scores.overall == 0.0
    assert task_report.final.model_dump(exclude_none=True) == {
        "split": "test",
        "score": 0.5,
        "grade": "ACCEPTABLE",
        "beats_baseline": True,
        "mode": "closed_book",
    }
    first, second = task_report.iterations
    assert [first.iteration, second.iteration] == [1, 2]
    assert first.scores["test"].overall == 0.0 and second.scores["test"].overall == 0.5
    assert second.training.model_dump() == {
        "steps": 4,
        "resumed_from_step": 2,
        "seconds": 12.5,
        "tokens_per_second": 800.0,
        "useful_tokens": 10000,
        "device": "cpu",
        "precision": "bf16",
        "continued_from": None,
        "masks": None,
    }
    assert second.adapter_key == "models/t1/iter-2/adapter/" and first.adapter_key is None
    assert len(second.loss_curve) == 4
    assert first.bad_case_followup == [] and len(second.bad_case_followup) == 3
    assert second.bad_cases == 2 + 2  # two feedback failures, two finite training losses
    assert all(isinstance(text, str) for text in second.suggestions)
    assert len(task_report.side_by_side) == 2
    assert TaskReport.model_validate_json(task_report.model_dump_json()) == task_report


def test_a_kept_iteration_other_than_the_last_is_the_reports_final(splits, config):
    """The task keeps iteration 1 (chosen on its feedback split): the final figures, wrong answers and examples side
    by side are iteration 1's, and the Markdown says which iteration was kept and why."""
    baseline = evaluate_predictions(splits, EMPTY_PREDICTIONS, TRAIN_LOSSES, config, iteration=0)
    first = evaluate_predictions(splits, GOOD_PREDICTIONS, TRAIN_LOSSES, config, 1, baseline=baseline)
    second = evaluate_predictions(splits, EMPTY_PREDICTIONS, TRAIN_LOSSES, config, 2, baseline=baseline)
    report = build_task_report(
        TaskInfo(task_id="t"),
        baseline,
        [first, second],
        [_training(2, 0, 1.0), _training(2, 0, 1.0)],
        final_iteration=1,
        final_because="the most feedback answers right (0.667)",
    )
    assert report.final.iteration == 1 and report.kept_iteration().iteration == 1
    assert report.final.score == first.headline.score == 0.5 and report.final.beats_baseline is True
    assert report.side_by_side == first.side_by_side
    assert "- Kept: iteration 1 of 2, registered and reported as final: the most feedback answers right (0.667)" in (
        render_markdown(report, None)
    )
    # a report written before that choice keeps its last iteration, and says nothing of it
    earlier = build_task_report(
        TaskInfo(task_id="t"), baseline, [first, second], [_training(2, 0, 1.0), _training(2, 0, 1.0)]
    )
    assert earlier.final.iteration is None and earlier.kept_iteration().iteration == 2
    assert earlier.final.score == second.headline.score and "Kept:" not in render_markdown(earlier, None)


def test_build_task_report_not_beating_baseline(splits, config):
    baseline = evaluate_predictions(splits, GOOD_PREDICTIONS, TRAIN_LOSSES, config, iteration=0)
    same = evaluate_predictions(splits, GOOD_PREDICTIONS, TRAIN_LOSSES, config, iteration=1, baseline=baseline)
    report = build_task_report(TaskInfo(task_id="t"), baseline, [same], [_training(2, 0, 1.0)])
    assert report.final.beats_baseline is False  # equal is not better


def test_build_task_report_needs_one_training_record_per_iteration(task_report, splits, config):
    evaluation = evaluate_predictions(splits, GOOD_PREDICTIONS, TRAIN_LOSSES, config, iteration=1)
    with pytest.raises(ValueError):
        build_task_report(TaskInfo(task_id="t"), evaluation, [evaluation], [])


def test_an_incremental_task_compares_its_first_iteration_with_its_parent(splits, config, task_report):
    parent_last = evaluate_predictions(splits, EMPTY_PREDICTIONS, TRAIN_LOSSES, config, iteration=1)
    first = evaluate_predictions(
        splits, GOOD_PREDICTIONS, TRAIN_LOSSES, config, 1, previous=parent_last, previous_label="parent"
    )
    assert set(first.comparison) == {"parent"} and first.comparison["parent"]["test"].delta == 0.5
    # the parent's bad cases are followed up
    assert {f.bad_case_id for f in first.bad_case_followup} == {e.id for e in FEEDBACK}
    incremental = task_report.model_copy(update={"task": task_report.task.model_copy(update={"parent_task_id": "p1"})})
    assert "- Incremental: continues task `p1`" in render_markdown(incremental, None)
    report = build_task_report(
        TaskInfo(task_id="c1", parent_task_id="p1"), parent_last, [first], [_training(5, 0, 1.0)]
    )
    assert "- Against the parent's last adapter on the same test split: 0.0000 → 0.5000 (Δ +0.5000)" in render_markdown(
        report, None
    )
    assert "Incremental" not in render_markdown(task_report, None)


def test_render_markdown(task_report):
    text = render_markdown(task_report, "report.png")
    assert text.startswith("# Fine-tuning report: FerroLink | FAQ\n")
    assert "- Task `t1`, mode CONTINUOUS, model `tiny-model`" in text
    assert "- Stopped because: max iterations" in text
    assert "**0.5000** (ACCEPTABLE, closed book) vs base model 0.0000: beats the baseline" in text
    assert "## Closed book and with retrieval" not in text  # one mode only
    assert "![loss and scores](report.png)" in text
    table = [
        line
        for line in text.splitlines()
        if line.startswith("| ") and " | test | " in line or line.startswith("| base |")
    ]
    assert len(table) == 3  # base + one test row per iteration
    header = next(line for line in text.splitlines() if line.startswith("| iteration |"))
    assert header.count("|") == 13  # 12 columns
    assert all(line.count("|") == 13 for line in table)
    # examples without fact checks (reports from before them): no accuracy, the blended delta
    assert "| 2 | test |  |  | 0.500 | 0.500 | 0.500 | 0.500 | 0.5000 | ACCEPTABLE | +0.5000 | 4 (2) |" in text
    assert "### Iteration 2: 0 of 3 previous bad cases answered right now (1 with a better blended score)" in text
    assert f"| {FEEDBACK[0].question} |  | 0.000 | 1.000 | 1 |" in text
    assert "## Improvement suggestions of the last round" in text
    assert f"| {TEST[0].question} | {TEST[0].answer} |  | {TEST[0].answer} |" in text


def test_render_markdown_without_plot_and_suggestions(task_report):
    task_report.iterations[-1].suggestions = []
    text = render_markdown(task_report, None)
    assert "![" not in text
    assert "## Improvement suggestions of the last round\n\n- none\n" in text


def test_render_markdown_escapes_table_cells(task_report):
    task_report.side_by_side = [SideBySide(question="a|b\nc", expected="x", base_answer=None, tuned_answer="y")]
    text = render_markdown(task_report, None)
    assert "| a\\|b c | x |  | y |" in text


def test_plot_report_writes_png(task_report, tmp_path):
    path = plot_report(task_report, tmp_path / "nested" / "report.png")
    assert path == tmp_path / "nested" / "report.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 5000


# ---------------------------------------------------------------- verdicts by fact checks


def test_with_fact_checks_the_wrong_answers_are_the_bad_cases_and_the_headline_is_the_share_right(config):
    no = [{"type": "polarity", "value": "no"}]
    port = [{"type": "number", "value": 7412}]
    feedback = [
        Example("Will config reload pick up a new port?", "No, port changes need a restart.", checks=no),
        Example("Which port serves metrics?", "Metrics are served on port 7412.", checks=port),
        Example("Is the server on Windows?", "No, Linux only.", checks=no),
    ]
    test = [
        Example("Does reload change the port?", "No, a restart is needed.", checks=no),
        Example("Where are metrics?", "On port 7412.", checks=port),
    ]
    splits = Splits(train=list(TRAIN), feedback=feedback, test=test)
    # worded like the references and wrong; a short right answer; the opposite answer
    before = {
        "feedback": ["Yes, port changes need a restart.", "Metrics are served on port 7411.", "No."],
        "test": ["Yes, a restart is needed.", "On port 7411."],
    }
    first = evaluate_predictions(splits, before, TRAIN_LOSSES, config, iteration=1)
    feedback_rows = first.splits["feedback"].examples
    assert [r.right for r in feedback_rows] == [False, False, True]
    assert feedback_rows[0].overall > 0.6  # the blended score calls the first wrong answer good
    # wrong ones, worst wording first
    assert [c.example_id for c in first.bad_cases if c.split == "feedback"] == [
        feedback[1].id,
        feedback[0].id,
    ]
    assert [c.error_type for c in first.bad_cases if c.split == "feedback"] == ["wrong_number", "wrong_polarity"]
    assert first.bad_cases[1].checks[0].model_dump() == {
        "check": {"derived": False, "type": "polarity", "value": "no"},
        "passed": False,
        "detail": "answers yes, expected no",
    }
    test_scores = first.splits["test"].scores
    assert (test_scores.fact_accuracy, test_scores.right, test_scores.judged) == (0.0, 0, 2)
    assert (
        first.headline.fact_accuracy == 0.0
        and first.headline.fact_accuracy_interval == (0.0, 0.6576)
        and first.headline.grade == "POOR"
    )

    after = {"feedback": ["No.", "It is port 7412.", "No."], "test": ["No, you must restart.", "Port 7412."]}
    second = evaluate_predictions(splits, after, TRAIN_LOSSES, config, iteration=2, baseline=first, previous=first)
    assert second.headline.fact_accuracy == 1.0 and second.headline.grade == "EXCELLENT"
    assert second.comparison["baseline"]["test"].fact_accuracy_delta == 1.0
    assert {f.bad_case_id: f.right_after for f in second.bad_case_followup} == {
        feedback[0].id: True,
        feedback[1].id: True,
    }
    assert [(r.base_right, r.tuned_right) for r in second.side_by_side] == [(False, True), (False, True)]
    assert EvaluationReport.model_validate_json(second.model_dump_json()) == second


def test_the_task_report_leads_with_the_share_right_and_lists_the_wrong_answers_first(config):
    no = [{"type": "polarity", "value": "no"}]
    test = [
        Example("Does reload change the port?", "No, a restart is needed.", checks=no),
        Example("Is the server on Windows?", "No, Linux only.", checks=no),
    ]
    splits = Splits(train=list(TRAIN), feedback=list(test), test=test)
    baseline = evaluate_predictions(
        splits, {"feedback": ["Yes.", "Yes."], "test": ["Yes.", "Yes."]}, [], config, iteration=0
    )
    tuned = evaluate_predictions(
        splits,
        {"feedback": ["No.", "Yes."], "test": ["No, restart it.", "Yes, Windows 11."]},
        TRAIN_LOSSES,
        config,
        iteration=1,
        baseline=baseline,
    )
    report = build_task_report(TaskInfo(task_id="t"), baseline, [tuned], [_training(3, 0, 1.0)])
    assert (report.final.fact_accuracy, report.final.beats_baseline) == (0.5, True)
    assert [row.question for row in report.wrong_answers] == [test[1].question]
    text = render_markdown(report, None)
    assert (
        "- Final test-split fact accuracy **0.500 [0.09, 0.91]**, 1/2 answers right (ACCEPTABLE, closed book) "
        "vs base model 0.000 [0.00, 0.66], 0/2" in text
    )
    assert text.index("## Wrong answers (test split, final iteration: 1)") < text.index("## Scores per iteration")
    assert f"| {test[1].question} | {test[1].answer} | Yes, Windows 11. | polarity: answers yes, expected no |" in text
    assert "| 1 | test | 0.500 [0.09, 0.91] | 1/2 |" in text


def test_the_report_tells_each_wrong_answer_with_passages_misread_or_not_retrieved(config):
    port = Example("Which port does the agent use?", "Port 7400.", checks=[{"type": "number", "value": 7400}])
    price = Example("What does Pro cost?", "$8 per user.", checks=[{"type": "number", "value": 8, "unit": "$"}])
    polar = Example("Do codes expire?", "Yes, after 10 minutes.", checks=[{"type": "polarity", "value": "yes"}])
    splits = Splits(train=list(TRAIN), feedback=[port, price, polar], test=[port, price, polar])
    passages = {
        port.id: ["The agent listens on port 7400."],
        price.id: ["Team costs $12."],
        polar.id: ["Codes expire."],
    }
    wrong = {"feedback": ["Port 7401.", "$12.", "No."], "test": ["Port 7401.", "$12.", "No."]}
    baseline = evaluate_predictions(splits, wrong, [], config, iteration=0, mode=RAG, passages=passages)
    tuned = evaluate_predictions(
        splits, wrong, TRAIN_LOSSES, config, iteration=1, baseline=baseline, mode=RAG, passages=passages
    )
    scores = tuned.modes[RAG]["feedback"].scores
    assert (scores.reading_errors, scores.retrieval_misses) == (1, 1)
    text = render_markdown(build_task_report(TaskInfo(task_id="t"), baseline, [tuned], [_training(3, 0, 1.0)]), None)
    assert (
        "1 were asked with passages that state their answer (misread), 1 with passages that do not (retrieval missed "
        "it); the other 1 cannot be looked up in a text (yes/no questions)." in text
    )
    assert "| Port 7401. | number: expected 7400, found 7401 | yes: misread |" in text
    assert "| $12. | number: expected 8 $, found 12 $, 12 | no: not retrieved |" in text


def test_the_report_lists_the_rows_new_documents_contradicted(task_report):
    notes = [
        StaleRowNote(
            row_id="web-port",
            question="Which TCP port | the web UI?",
            old_value="7410",
            new_value="7420",
            document="guide.md",
            document_version=2,
            state="corrected",
        ),
        StaleRowNote(
            row_id="discovery",
            question="Which port does LAN discovery use?",
            old_value="7413",
            new_value=None,
            document="guide.md",
            document_version=2,
            state="stale",
        ),
    ]
    text = render_markdown(task_report.model_copy(update={"stale_rows": notes}), None)
    assert "## Rows the new documents contradict" in text
    assert "2 rows of the dataset ask for a value a new document version no longer states; 1 still stale" in text
    assert "| `web-port` | Which TCP port \\| the web UI? | 7410 → 7420 | guide.md v2 | corrected |" in text
    assert "| `discovery` | Which port does LAN discovery use? | 7413 removed | guide.md v2 | stale |" in text
    assert "Rows the new documents contradict" not in render_markdown(task_report, None)
