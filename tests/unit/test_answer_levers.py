"""The training levers' data: yes/no questions with both answers, answers in the passage's words, focused contexts,
yes/no rows balanced by their answer, quote-then-answer targets."""

from __future__ import annotations

import numpy as np

from facts.judge import judge
from knowledge.index import ChunkRecord, chunk_id
from ml.examples import Example
from ml.focused_context import focus_passages, focused
from ml.passage_answers import in_passage_words, passage_answer
from ml.polar_questions import polar_questions, value_span
from ml.polarity_balance import balance_polarity, polarity_of
from ml.quoted_answers import quoted, shown_answer
from schemas.checks import dump_checks, parse_checks

PORTS = "- The web console is served over HTTPS on TCP port 7410.\n- File synchronization uses TCP port 7411."
PRICES = "- The FerroBox F2 costs $499 and the FerroBox F4 costs $899.\n- Pro costs $8 per user per month."


def chunk(name: str, text: str) -> ChunkRecord:
    return ChunkRecord(chunk_id(name, 1, 0), name, 1, f"{name}.md", 0, ["H"], text, 0, len(text))


def test_polar_questions_ask_each_value_as_written_and_swapped_for_one_of_its_kind():
    examples = polar_questions([chunk("ports", PORTS), chunk("prices", PRICES)], seed=3)
    by_answer: dict[str, list[Example]] = {}
    for e in examples:
        by_answer.setdefault(e.answer.split(",")[0], []).append(e)
    assert set(by_answer) == {"Yes", "No"}
    for e in by_answer["Yes"]:  # the true claim is the statement itself
        assert e.answer[5:].rstrip(".").casefold() in e.question.casefold()
    swapped = [e for e in by_answer["No"] if "7410" in e.answer]
    assert swapped and "7411" in swapped[0].question and "7410" not in swapped[0].question  # a port for a port
    for e in examples:  # never a port for a price
        assert not ("port" in e.question and "$" in e.question)
        assert judge(e.answer, parse_checks(e.checks)).right


def test_a_statement_with_no_value_of_its_kind_elsewhere_gets_only_its_yes_question():
    examples = polar_questions([chunk("one", "- Logs are rotated daily and 14 rotated files are kept.")])
    assert [e.answer.split(",")[0] for e in examples] == ["Yes"]
    assert value_span("Logs are rotated daily and 14 rotated files are kept.").text == "14"


def test_an_answer_is_restated_from_its_passage_only_when_its_checks_still_pass():
    ports = chunk("ports", PORTS)
    checks = dump_checks(parse_checks([{"type": "number", "value": 7410}]))
    example = Example("Which port does the console use?", "The console uses port 7410.", checks=checks)
    assert passage_answer(example, ports) == "The web console is served over HTTPS on TCP port 7410."
    polar = Example(
        "Is the console on port 7410?",
        "Yes, it is on 7410.",
        checks=dump_checks(parse_checks([{"type": "polarity", "value": "yes"}])),
    )
    assert passage_answer(polar, ports).startswith("Yes, the web console is served")
    wrong_fact = Example(
        "How much is the F4?",
        "The FerroBox F4 costs $899.",
        checks=dump_checks(parse_checks([{"type": "number", "value": 899, "unit": "$"}])),
    )
    assert passage_answer(wrong_fact, ports) is None  # no statement of the ports passage passes
    restated, count = in_passage_words(
        [
            Example(example.question, example.answer, checks=checks, supporting_chunk_id=ports.chunk_id),
            Example("No passage", "Kept as written.", checks=checks),
        ],
        {ports.chunk_id: ports},
    )
    assert count == 1 and restated[1].answer == "Kept as written."


def test_a_focused_context_keeps_the_statements_nearest_the_question_in_passage_order():
    words = ["port", "price", "log", "backup"]

    def embed(texts: list[str]) -> np.ndarray:  # a bag of the four words: enough to rank by
        vectors = np.array([[float(w in t.lower()) for w in words] + [0.1] for t in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    example = Example(
        "Which port and which log?",
        "7410; info.",
        context=[
            "The console port is 7410. The price is $8 per user.",
            "The default log level is info. Backups run at 02:00 daily.",
        ],
    )
    [cut] = focused([example], embed, keep=2)
    assert cut.context == ["The console port is 7410.", "The default log level is info."]
    assert focused([Example("q", "a")], embed) == [Example("q", "a")]

    # a caller that embedded the question already (to retrieve) passes its vector: only the statements are embedded
    asked: list[list[str]] = []
    question_vector = embed([example.question])
    cut_again = focus_passages(
        [example.question], [example.context], lambda texts: asked.append(texts) or embed(texts), 2, question_vector
    )
    assert cut_again == [cut.context] and len(asked) == 1 and example.question not in asked[0]


def test_the_levers_summary_compares_each_arm_with_the_reference_question_by_question_on_the_seeds_both_ran():
    from bench.training_levers import summary

    def run(arm: str, seed: int, feedback: list[str], test: list[str]) -> dict:
        return {
            "arm": arm,
            "seed": seed,
            "examples_seen": 80,
            "tokens": 10_000,
            "feedback": {"right": len(feedback), "n": 4, "right_ids": feedback},
            "test": {"right": len(test), "n": 4, "right_ids": test},
        }

    table = summary(
        [
            run("reference", 1, ["a", "b"], ["a"]),
            run("reference", 2, ["a"], ["a"]),
            run("lever", 1, ["a", "c", "d"], []),
            run("lever", 2, ["b", "c"], ["a"]),
            run("lever", 3, ["a", "b", "c", "d"], ["a"]),  # no reference run of seed 3: not paired
        ]
    )
    assert table["reference"]["feedback"] == {"right": [2, 1], "mean": 1.5, "n": 4}
    lever = table["lever"]
    assert lever["feedback"]["right"] == [3, 2, 4]
    assert lever["feedback"]["against_reference"] == {"seeds": [1, 2], "gained": 4, "lost": 2, "mcnemar_p": 0.6875}
    assert lever["test"]["against_reference"]["gained"] == 0 and lever["test"]["against_reference"]["lost"] == 1
    assert lever["examples_per_1k_tokens"] == 8.0


def polar(question: str, answer: str, weight: int = 1) -> Example:
    return Example(question, f"{answer.capitalize()}.", weight=weight, checks=[{"type": "polarity", "value": answer}])


def test_the_rarer_yes_no_answer_gets_copies_until_both_are_trained_equally_often():
    yes = [polar(f"Is {i} supported?", "yes") for i in range(7)]
    no = [polar("Is A supported?", "no"), polar("Is B supported?", "no", weight=2)]
    other = Example("Which port?", "Port 7410.")
    examples = [no[0], *yes[:4], other, no[1], *yes[4:]]
    balanced = balance_polarity(examples)
    assert [e.id for e in balanced] == [e.id for e in examples]  # no row written, removed or moved
    copies = {"yes": 0, "no": 0, None: 0}
    for e in balanced:
        copies[polarity_of(e)] += e.copies
    assert copies == {"yes": 7, "no": 7, None: 1}
    assert [e.copies for e in balanced if polarity_of(e) == "no"] == [3, 4]  # the 4 missing copies spread evenly
    assert balance_polarity(yes) == yes  # no "No" row to weight: nothing to balance
    assert balance_polarity(no + yes[:3]) == no + yes[:3]  # already even (3 copies each)
    more_no = balance_polarity([*no, polar("Is C supported?", "no"), yes[0]])  # "Yes" the rarer: it gets the copies
    assert [e.copies for e in more_no] == [1, 2, 1, 4]


def test_a_quoted_target_puts_the_statement_that_holds_the_fact_before_the_answer_and_only_the_answer_is_shown():
    asked = Example(
        "Will ferro config reload pick up a new port number?",
        "No, port changes require a service restart.",
        context=["Logs rotate daily. Port changes require a service restart.", "The console uses port 7410."],
    )
    unsupported = Example("What is FL-204?", "A sync conflict.", context=["The console uses port 7410."])
    closed_book = Example("What is FL-204?", "A sync conflict.")
    [target, alone, unchanged] = quoted([asked, unsupported, closed_book])
    assert target.answer == (
        "Quote: Port changes require a service restart.\nAnswer: No, port changes require a service restart."
    )
    assert target.id == asked.id and alone == unsupported and unchanged == closed_book
    assert shown_answer(target.answer) == "No, port changes require a service restart."
    assert shown_answer("A sync conflict.") == "A sync conflict."  # a reply that did not quote is all answer
    assert shown_answer("Quote: The console uses port 7410.") == ""  # quoted, cut off before answering: no answer


def test_an_arm_is_named_by_what_it_changes_from_the_demos_setup():
    from bench.training_levers import DEMO_CONTEXTS, arm_label

    assert arm_label("polarity_balanced", "fp32", "attention") == "polarity_balanced"
    assert arm_label("polarity_balanced", "fp32", "attention", DEMO_CONTEXTS, "full") == "polarity_balanced+full"
    assert arm_label("polarity_balanced", "bf16-train", "attention", DEMO_CONTEXTS) == "polarity_balanced@bf16-train"
    assert (
        arm_label("polarity_balanced", "bf16-train", "all_linear", "2x2")
        == "polarity_balanced+all_linear+2x2@bf16-train"
    )


def test_the_passage_ceiling_counts_questions_whose_passages_state_their_answer():
    from bench.passage_ceiling import ceiling

    port = Example("Which port?", "Port 7420.", checks=[{"type": "number", "value": 7420}])
    price = Example("What does it cost?", "$549.", checks=[{"type": "number", "value": 549, "unit": "$"}])
    polar = Example("Does it expire?", "Yes.", checks=[{"type": "polarity", "value": "yes"}])
    passages = [["The web console uses TCP port 7420."], ["The F2 costs $499."], ["Codes expire."]]
    assert ceiling([port, price, polar], passages) == {"stated": 1, "not_stated": 1, "cannot_tell": 1, "questions": 3}


def test_qa_first_trains_half_its_qa_rows_alone_then_the_rest_mixed_with_the_documents_within_the_budget():
    from bench.training_levers import qa_first_batches

    qa = [([i] * 10, [-100] * 5 + [i] * 5) for i in range(6)]  # 10 tokens each
    documents = [([100 + i] * 20, [100 + i] * 20) for i in range(2)]  # 40 tokens in all
    batches = qa_first_batches(qa, documents, budget_tokens=200, batch_size=4, seed=3)
    rows = [row for batch in batches for row in batch]
    assert sum(len(ids) for ids, _ in rows) == 200  # 16 QA rows (160 tokens) and the documents (40)
    assert sorted(ids[0] for ids, _ in rows if ids[0] >= 100) == [100, 101]
    assert all(ids[0] < 100 for batch in batches[:2] for ids, _ in batch)  # the first 8 QA rows come alone
    first_epoch = {ids[0] for ids, _ in rows[:6]}
    assert first_epoch == set(range(6))  # the QA rows in shuffled epochs: every row once before any twice
    assert qa_first_batches(qa, documents, 200, 4, 3) == batches  # the seed fixes the order


def test_a_document_row_supervises_every_token_and_ends_with_the_end_of_text():
    from bench.training_levers import document_rows

    class Tokenizer:
        eos_token_id = 0

        def __call__(self, text: str, add_special_tokens: bool) -> dict:
            assert not add_special_tokens
            return {"input_ids": [len(word) for word in text.split()]}

    assert document_rows(Tokenizer(), ["ab abc", "a b c d"], max_length=3) == [
        ([2, 3, 0], [2, 3, 0]),
        ([1, 1, 1], [1, 1, 1]),  # cut at max_length
    ]
