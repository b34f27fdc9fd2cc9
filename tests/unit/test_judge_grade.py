"""The judge's reply read as a grade, and secrets sealed under the server's secret key."""

from __future__ import annotations

import pytest

from auth.sealed import Unreadable, seal, unseal
from suites.cases import parse_case
from suites.verdicts import NO_JUDGE, judge_case
from teacher.judge import read_grade


@pytest.mark.parametrize(
    ("reply", "passed", "read"),
    [
        ("PASS", True, True),
        ("pass - it names port 7410", True, True),
        ("**PASS**: yes", True, True),
        ('"Fail." The answer is rude.', False, True),
        ("FAIL", False, True),
        ("Passable, I suppose", False, False),  # the first word is not PASS
        ("The answer passes.", False, False),
        ("", False, False),
    ],
)
def test_the_first_word_decides_and_anything_else_fails(reply, passed, read):
    grade = read_grade(reply)
    assert grade.passed is passed
    assert grade.detail.startswith(
        "the judge says: " if read else "the judge's reply starts with neither PASS nor FAIL"
    )


def test_a_judge_case_asks_the_grader_with_its_rubric_and_fails_without_one():
    case = parse_case({"id": "c", "prompt": "Say hello.", "judge": {"rubric": "Polite."}}, 1)
    asked = []
    verdict = judge_case(case, "Hello!", 5, lambda *args: asked.append(args) or (True, "the judge says: PASS"))
    assert verdict.passed and asked == [("Polite.", "Say hello.", "Hello!")]
    assert judge_case(case, "Hello!", 5).reason == f"judge: {NO_JUDGE}"
    with pytest.raises(ValueError, match="rubric"):
        parse_case({"id": "c", "prompt": "Say hello.", "judge": {"rubric": ""}}, 1)


def test_a_sealed_secret_opens_only_under_its_own_key():
    sealed = seal("k" * 40, "sk-123")
    assert "sk-123" not in sealed and unseal("k" * 40, sealed) == "sk-123"
    with pytest.raises(Unreadable):
        unseal("other" * 10, sealed)
