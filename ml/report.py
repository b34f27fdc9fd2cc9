"""The task report: every iteration's scores against the baseline, loss curves, bad-case lineage, and examples side
by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml.metrics import METRIC_NAMES
from schemas.reports import (
    BaselineSummary,
    EvaluationReport,
    FinalSummary,
    IterationReport,
    StaleRowNote,
    TaskInfo,
    TaskReport,
    TrainingSummary,
)


def build_task_report(
    task: TaskInfo,
    baseline: EvaluationReport,
    evaluations: list[EvaluationReport],
    training: list[dict[str, Any]],
    stale_rows: list[StaleRowNote] | None = None,
    final_iteration: int | None = None,
    final_because: str | None = None,
) -> TaskReport:
    """One report from the per-iteration evaluation reports and training records (`training_metrics.json`), with the
    rows of its dataset that new documents made stale. Its final figures are those of `final_iteration`, the
    iteration the task keeps (core.iteration_choice), or of the last without one."""
    iterations = []
    for evaluation, train in zip(evaluations, training, strict=True):
        iterations.append(
            IterationReport(
                iteration=evaluation.iteration,
                headline=evaluation.headline,
                scores={split: evaluation.splits[split].scores for split in ("feedback", "test")},
                modes=evaluation.mode_scores(),
                retrieval=evaluation.retrieval,
                knowledge_base_version=evaluation.knowledge_base_version,
                comparison=evaluation.comparison,
                bad_cases=len(evaluation.bad_cases),
                suggestions=[s.text for s in evaluation.suggestions],
                bad_case_followup=evaluation.bad_case_followup,
                training=TrainingSummary(**{k: train[k] for k in TrainingSummary.model_fields if k in train}),
                loss_curve=train["loss_curve"],
                adapter_key=evaluation.adapter_key,
            )
        )
    kept = next((e for e in evaluations if e.iteration == final_iteration), evaluations[-1])
    mode = kept.headline.mode
    accuracy, base_accuracy = kept.headline.fact_accuracy, baseline.accuracy("test", mode)
    beats = (
        accuracy > base_accuracy
        if accuracy is not None and base_accuracy is not None
        else kept.headline.score > baseline.score("test", mode)
    )
    return TaskReport(
        task=task,
        baseline=BaselineSummary(
            scores=baseline.modes[mode]["test"].scores,
            feedback_scores=baseline.modes[mode]["feedback"].scores,
            modes=baseline.mode_scores(),
        ),
        final=FinalSummary(
            score=kept.headline.score,
            grade=kept.headline.grade,
            mode=mode,
            beats_baseline=beats,
            fact_accuracy=accuracy,
            fact_accuracy_interval=kept.headline.fact_accuracy_interval,
            iteration=kept.iteration if final_iteration is not None else None,
            because=final_because,
        ),
        iterations=iterations,
        side_by_side=kept.side_by_side,
        wrong_answers=[row for row in kept.modes[mode]["test"].examples if row.right is False],
        stale_rows=stale_rows or [],
    )


def plot_report(report: TaskReport, path: Path) -> Path:
    """Loss curve per iteration and test/feedback score per iteration against the baseline, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(11, 4))
    offset = 0
    for it in report.iterations:
        steps = [offset + s for s, _ in it.loss_curve]
        loss_ax.plot(steps, [v for _, v in it.loss_curve], label=f"iteration {it.iteration}")
        offset = steps[-1] if steps else offset
    loss_ax.set(title="Training loss", xlabel="step (cumulative)", ylabel="loss")
    loss_ax.legend()
    numbers = [it.iteration for it in report.iterations]
    # the share of right answers where the examples have fact checks; the blended wording score for reports without them
    by_facts = report.baseline.scores.fact_accuracy is not None and all(
        it.scores["test"].fact_accuracy is not None for it in report.iterations
    )
    value, what = ("fact_accuracy", "Fact accuracy") if by_facts else ("overall", "Blended score")
    for split in ("test", "feedback"):
        score_ax.plot(
            numbers,
            [getattr(it.scores[split], value) for it in report.iterations],
            marker="o",
            label=f"tuned ({split} split)",
        )
    score_ax.axhline(
        getattr(report.baseline.scores, value), color="grey", linestyle="--", label="base model (test split)"
    )
    score_ax.set(title=f"{what} per iteration", xlabel="iteration", ylabel=what.lower(), ylim=(0, 1), xticks=numbers)
    score_ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _incremental_lines(report: TaskReport) -> list[str]:
    """An incremental task: the task it continues, and the score change against it on the same locked test split."""
    task = report.task
    if not task.parent_task_id:
        return []
    lines = [
        f"- Incremental: continues task `{task.parent_task_id}` (its adapter and splits) after its knowledge base "
        f"changed"
    ]
    parent = report.iterations[0].comparison.get("parent", {}).get("test") if report.iterations else None
    if parent is not None:
        lines.append(
            f"- Against the parent's last adapter on the same test split: {parent.score:.4f} → "
            f"{report.final.score:.4f} "
            f"(Δ {report.final.score - parent.score:+.4f})"
        )
    return lines


def render_markdown(report: TaskReport, plot_name: str | None) -> str:
    task, base = report.task, report.baseline
    lines = [
        f"# Fine-tuning report: {task.name}",
        "",
        f"- Task `{task.task_id}`, mode {task.mode}, model `{task.model_name}`",
        f"- Stopped because: {task.stop_reason}",
        *_incremental_lines(report),
        *_final_lines(report),
        "",
    ]
    if plot_name:
        lines += [f"![loss and scores]({plot_name})", ""]
    lines += _wrong_answers(report)
    lines += _stale_rows(report)
    header = (
        "| iteration | split | fact accuracy [95%] | right | "
        + " | ".join(METRIC_NAMES)
        + " | blended | grade | Δ vs base (accuracy, else blended) | train steps (resumed from) |"
    )
    lines += ["## Scores per iteration", "", header, "|" + "---|" * (len(METRIC_NAMES) + 8)]
    lines.append(
        f"| base | test | {_accuracy(base.scores)} | {_right(base.scores)} | "
        + " | ".join(f"{getattr(base.scores, m):.3f}" for m in METRIC_NAMES)
        + f" | {base.scores.overall:.4f} | | | |"
    )
    for it in report.iterations:
        for split in ("test", "feedback"):
            scores = it.scores[split]
            comparison = it.comparison.get("baseline", {}).get(split)
            delta = (
                (comparison.fact_accuracy_delta if comparison.fact_accuracy_delta is not None else comparison.delta)
                if comparison
                else None
            )
            grade = it.headline.grade if split == "test" else ""
            training = f"{it.training.steps} ({it.training.resumed_from_step})" if split == "test" else ""
            lines.append(
                f"| {it.iteration} | {split} | {_accuracy(scores)} | {_right(scores)} | "
                + " | ".join(f"{getattr(scores, m):.3f}" for m in METRIC_NAMES)
                + f" | {scores.overall:.4f} | {grade} | {f'{delta:+.4f}' if delta is not None else ''} | {training} |"
            )
    if len(base.modes) > 1:
        lines += [
            "",
            "## Closed book and with retrieval (test split: fact accuracy, blended score)",
            "",
            "| | "
            + " | ".join(f"base ({m})" for m in base.modes)
            + " | "
            + " | ".join(f"tuned ({m})" for m in base.modes)
            + " | retrieval recall@k | MRR |",
            "|" + "---|" * (2 * len(base.modes) + 3),
        ]
        for it in report.iterations:
            retrieval = it.retrieval.get("test")
            lines.append(
                f"| iteration {it.iteration} | "
                + " | ".join(_pair(base.modes[m]["test"]) for m in base.modes)
                + " | "
                + " | ".join(_pair(it.modes[m]["test"]) if m in it.modes else "" for m in base.modes)
                + f" | {_number(retrieval.recall_at_k if retrieval else None)} | "
                f"{_number(retrieval.mrr if retrieval else None)} |"
            )
    masked = [it for it in report.iterations if it.training.masks]
    if masked:
        lines += [
            "",
            "## What training supervised (loss masks)",
            "",
            "| iteration | examples | conversations | assistant turns | supervised tokens | share | left out |",
            "|---|---|---|---|---|---|---|",
        ]
        for it in masked:
            m = it.training.masks or {}
            left_out = "; ".join(f"{n} {why}" for why, n in (m.get("rejected") or {}).items()) or "none"
            lines.append(
                f"| {it.iteration} | {m.get('examples')} | {m.get('conversations')} | {m.get('assistant_turns')} | "
                f"{m.get('supervised_tokens')} | {m.get('supervised_share')} | {left_out} |"
            )
    lines += ["", "## From bad case to score change", ""]
    for it in report.iterations:
        followups = it.bad_case_followup
        if not followups:
            continue
        fixed = sum(1 for f in followups if f.right_after)
        improved = sum(1 for f in followups if f.delta is not None and f.delta > 0)
        lines += [
            f"### Iteration {it.iteration}: {fixed} of {len(followups)} previous bad cases answered right now "
            f"({improved} with a better blended score)",
            "",
            "| bad case (feedback split) | right now | blended before | after | targeted training examples | chunks "
            "generated from |",
            "|---|---|---|---|---|---|",
        ]
        for f in followups[:10]:
            lines.append(
                f"| {_cell(f.question)} | {_yes_no(f.right_after)} | {f.before:.3f} | "
                f"{f.after if f.after is None else format(f.after, '.3f')} "
                f"| {len(f.targeted_training_examples)} | {len(f.chunk_ids)} |"
            )
        lines.append("")
    lines += ["## Improvement suggestions of the last round", ""]
    lines += [f"- {text}" for text in report.iterations[-1].suggestions[:10]] or ["- none"]
    lines += [
        "",
        "## Examples side by side (test split)",
        "",
        "| question | expected | base model | tuned |",
        "|---|---|---|---|",
    ]
    for row in report.side_by_side:
        lines.append(
            f"| {_cell(row.question)} | {_cell(row.expected)} | "
            f"{_verdict(row.base_right)}{_cell(row.base_answer or '')} "
            f"| {_verdict(row.tuned_right)}{_cell(row.tuned_answer)} |"
        )
    return "\n".join(lines) + "\n"


def _final_lines(report: TaskReport) -> list[str]:
    final, base = report.final, report.baseline
    beats = "beats" if final.beats_baseline else "does NOT beat"
    kept = (
        [
            f"- Kept: iteration {final.iteration} of {len(report.iterations)}, registered and reported as final: "
            f"{final.because}"
        ]
        if final.iteration is not None
        else []
    )
    if final.fact_accuracy is None:
        return kept + [
            f"- Final test-split score **{final.score:.4f}** ({final.grade}, {final.mode.replace('_', ' ')}) vs base "
            f"model "
            f"{base.scores.overall:.4f}: {beats} the baseline"
        ]
    tuned = report.kept_iteration().scores["test"]
    return kept + [
        f"- Final test-split fact accuracy **{_accuracy(tuned)}**, {_right(tuned)} answers right ({final.grade}, "
        f"{final.mode.replace('_', ' ')}) vs base model {_accuracy(base.scores)}, {_right(base.scores)}: {beats} the "
        f"baseline",
        f"- Blended wording score (secondary): {final.score:.4f} vs base model {base.scores.overall:.4f}",
    ]


def _stale_rows(report: TaskReport) -> list[str]:
    """The rows new document versions contradicted: what changed, and whether a user has confirmed or corrected them."""
    if not report.stale_rows:
        return []
    waiting = sum(1 for row in report.stale_rows if row.state == "stale")
    lines = [
        "## Rows the new documents contradict",
        "",
        f"{len(report.stale_rows)} rows of the dataset ask for a value a new document version no longer states; "
        f"{waiting} still stale (left out of training and of the questions until a user confirms or corrects them).",
        "",
        "| row | question | value | document | state |",
        "|---|---|---|---|---|",
    ]
    for row in report.stale_rows:
        change = f"{row.old_value} → {row.new_value}" if row.new_value else f"{row.old_value} removed"
        lines.append(
            f"| `{row.row_id}` | {_cell(row.question)} | {_cell(change)} | {_cell(row.document)} "
            f"v{row.document_version} | {row.state} |"
        )
    return lines + [""]


def _wrong_answers(report: TaskReport, limit: int = 15) -> list[str]:
    """The final iteration's wrong test answers, first in the report: what was asked, expected, answered, which check
    failed, and (asked with passages) whether the passages stated the answer: a misreading or a retrieval miss."""
    if not report.wrong_answers:
        return []
    lines = [f"## Wrong answers (test split, final iteration: {len(report.wrong_answers)})", ""]
    misread = sum(1 for row in report.wrong_answers if row.answer_in_passages is True)
    missed = sum(1 for row in report.wrong_answers if row.answer_in_passages is False)
    if misread or missed:
        lines += [
            f"{misread} were asked with passages that state their answer (misread), {missed} with passages that do "
            f"not (retrieval missed it); the other {len(report.wrong_answers) - misread - missed} cannot be looked up "
            "in a text (yes/no questions).",
            "",
        ]
    lines += ["| question | expected | answer | failed check | answer in its passages |", "|---|---|---|---|---|"]
    for row in report.wrong_answers[:limit]:
        failed = next((c for c in row.checks if not c.passed), None)
        reason = f"{failed.check.get('type')}: {failed.detail}" if failed else ""
        lines.append(
            f"| {_cell(row.question)} | {_cell(row.expected)} | {_cell(row.got)} | {_cell(reason)} "
            f"| {IN_PASSAGES[row.answer_in_passages]} |"
        )
    if len(report.wrong_answers) > limit:
        lines.append(
            f"| … and {len(report.wrong_answers) - limit} more (the downloadable answers have them all) | | | | |"
        )
    return lines + [""]


IN_PASSAGES = {True: "yes: misread", False: "no: not retrieved", None: ""}


def _accuracy(scores) -> str:
    if scores.fact_accuracy is None:
        return ""
    low, high = scores.fact_accuracy_interval or (None, None)
    return f"{scores.fact_accuracy:.3f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None else "")


def _right(scores) -> str:
    return f"{scores.right}/{scores.judged}" if scores.judged else ""


def _pair(scores) -> str:
    return (
        f"{scores.fact_accuracy:.3f} / {scores.overall:.4f}"
        if scores.fact_accuracy is not None
        else f"{scores.overall:.4f}"
    )


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _verdict(value: bool | None) -> str:
    return "" if value is None else ("✓ " if value else "✗ ")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:160]
