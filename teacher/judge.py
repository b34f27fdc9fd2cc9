"""A suite case's `judge` assertion: the organization's own OpenAI-compatible endpoint reads the question, the answer
and the case's rubric, and replies PASS or FAIL with a reason.

The reply's first word decides (`read_grade`: "PASS", "FAIL", in any case, with markdown or punctuation around it); a
reply that starts with neither fails the assertion and says what the judge wrote, so a judge that rambles is seen,
never counted as a pass."""

from __future__ import annotations

import re
from dataclasses import dataclass

from teacher import ChatEndpoint

SYSTEM = (
    "You grade an assistant's answer against a rubric. Reply with PASS if the answer meets the rubric and FAIL if it "
    "does not, as the first word, then one short sentence that says why."
)
MAX_REPLY_TOKENS = 64
_FIRST_WORD = re.compile(r"^[\s*_#>`\"'\[(]*([A-Za-z]+)")


@dataclass(frozen=True)
class Grade:
    passed: bool
    detail: str  # the judge's reply (or why it could not be read)


def read_grade(reply: str) -> Grade:
    """PASS or FAIL from the reply's first word; anything else fails, quoting the reply."""
    text = " ".join(reply.split())
    match = _FIRST_WORD.match(text)
    word = match.group(1).upper() if match else ""
    if word in ("PASS", "FAIL"):
        return Grade(word == "PASS", f"the judge says: {text[:300]}")
    return Grade(False, f"the judge's reply starts with neither PASS nor FAIL: {text[:300]!r}")


class Judge:
    """The organization's judge endpoint (`judge_url`, `judge_model`, its API key)."""

    def __init__(self, endpoint: ChatEndpoint):
        self.endpoint = endpoint

    @classmethod
    def at(cls, url: str, model: str, api_key: str | None) -> Judge:
        return cls(ChatEndpoint(url, model, api_key, who="the judge"))

    def grade(self, rubric: str, question: str, answer: str) -> Grade:
        """The judge's grade of `answer` to `question` against `rubric` (TeacherError when the endpoint fails)."""
        user = f"Rubric: {rubric}\n\nQuestion: {question}\n\nAnswer: {answer}\n\nPASS or FAIL?"
        return read_grade(self.endpoint.complete(SYSTEM, user, max_tokens=MAX_REPLY_TOKENS))
