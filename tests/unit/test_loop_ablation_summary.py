"""bench/loop_ablation's summary: each run's iteration is chosen on the feedback split, and the arms are compared
question by question on the test split, pooled over seeds."""

from __future__ import annotations

from bench.loop_ablation import summarize


def judged(feedback: list[str], test: list[str], n: int = 10) -> dict:
    return {"rag": {"feedback": {"n": n, "right_ids": feedback}, "test": {"n": n, "right_ids": test}}}


def run(variant: str, seed: int, iterations: list[dict], baseline: dict) -> dict:
    return {
        "variant": variant,
        "seed": seed,
        "knowledge_base": True,
        "task_id": f"{variant}-{seed}",
        "seconds": 60,
        "baseline": baseline,
        "iterations": [
            {
                "iteration": i,
                "train_steps": 20,
                "judged": it,
                "previous_bad_cases": 4 if i > 1 else 0,
                "previous_bad_cases_right_after": 3 if i > 1 else 0,
                "generated_examples": 5,
            }
            for i, it in enumerate(iterations, start=1)
        ],
    }


def test_the_iteration_is_chosen_on_feedback_and_the_arms_are_compared_on_test():
    baseline = judged(["f1"], ["t1"])
    runs = [
        # iteration 2 has more right on feedback but fewer on test: it is chosen all the same
        run(
            "grounded",
            7,
            [judged(["f1"], ["t1", "t2", "t3", "t4"]), judged(["f1", "f2"], ["t1", "t2", "t3"])],
            baseline,
        ),
        run("random_chunks", 7, [judged(["f1"], ["t1"]), judged(["f1"], ["t2"])], baseline),
        # a tie on feedback keeps the earlier iteration
        run("grounded", 8, [judged(["f1"], ["t1", "t2"]), judged(["f2"], ["t1", "t2", "t3", "t4", "t5"])], baseline),
        run("random_chunks", 8, [judged([], ["t1", "t5"]), judged([], [])], baseline),
    ]
    out = summarize(runs, iterations=2, max_steps=20)
    grounded = out["arms"]["grounded"]
    assert grounded["chosen_iteration"] == [2, 1]
    assert grounded["test_right"] == [3, 2] and grounded["test_fact_accuracy"] == 0.25
    assert out["arms"]["random_chunks"]["chosen_iteration"] == [1, 1]
    # seed 7: {t1,t2,t3} vs {t1} -> +2; seed 8: {t1,t2} vs {t1,t5} -> +1 -1
    assert out["comparisons"]["grounded_vs_random_chunks"] == {
        "seeds": [7, 8],
        "gained": 3,
        "lost": 1,
        "mcnemar_p": 0.625,
    }
    assert out["claims"]["grounded_beats_random_chunks"]["holds"] is False  # ahead, but not significant
    # against the base model with retrieval ({t1}), pooled: +2 and +1, nothing lost
    assert out["comparisons"]["grounded_vs_retrieval_only"] == {"gained": 3, "lost": 0, "mcnemar_p": 0.25}
    assert out["claims"]["each_round_fixes_most_previous_bad_cases"] == {"right": 6, "of": 8, "holds": True}
    assert out["claims"]["tuned_with_retrieval_reaches_0_75"]["holds"] is False
