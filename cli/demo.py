"""The main job: start the embedded stack, build a knowledge base from the sample's documents, upload the sample
dataset, run a continuous-learning task that trains and answers with passages from the knowledge base, through the
API with live progress, and print the iterations against the base model, closed book and with retrieval; then put
the registered final adapter through the promotion gate and ask it a held-out question through `wlops serve`; last,
change one fact of one document, list the dataset rows the new version contradicts, and ask about the fact again."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from cli.api_client import ApiClient, ApiError
from cli.resources import gate_decision
from cli.stack import Stack
from cli.watch import EventProgress, task_events
from core.settings import Settings
from core.status import TaskStatus
from facts.judge import judge
from ml.examples import normalize_text, read_rows, record_checks, record_to_pair
from schemas.checks import parse_checks
from schemas.reports import StoredTaskReport

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample"
SAMPLE_DATASET = SAMPLE / "ferrolink_faq.jsonl"
SAMPLE_KNOWLEDGE = SAMPLE / "knowledge"
DEMO_HYPERPARAMETERS = {
    "learning_rate": 1e-3,
    "epochs": 2,
    "batch_size": 8,
    # 2 x 60 steps of one-statement prompts: the 80,000 training tokens that won on the feedback split with three
    # statements in 2 x 40 steps (bench/training_levers, 2026-12-06)
    "max_steps": 60,
    "lora_r": 16,
    "lora_alpha": 32,
    "max_seq_length": 160,
    "seed": 7,
    # "Yes" and "No" trained equally often: ahead on the feedback split in every seed (bench/training_levers)
    "balance_yes_no": True,
}
# the sample's facts are one-line list items: small chunks make short, precise passages (and fast training)
DEMO_KNOWLEDGE_BASE = {
    "name": "FerroLink documentation",
    "description": "the sample's fact sheet as five documents",
    "chunk_tokens": 48,
    "chunk_overlap_tokens": 0,
}
# 5 chunks retrieved for each prompt, cut to the one statement nearest the question: the contexts bench/training_levers
# kept (ahead of 3 chunks cut to 3 statements on the feedback split in every seed, session 19)
DEMO_RAG = {"retrieval_top_k": 5, "context_statements": 1, "max_seq_length": 384}
DEMO_MODEL = "ferrolink-assistant"  # the registered model the task's final adapter joins


@dataclass(frozen=True)
class KnowledgeUpdate:
    """One fact of one document of the sample changes: the sentence before and after, and a question about it with
    the checks its answer must pass afterwards."""

    document: str
    old: str
    new: str
    question: str
    checks: list[dict]


# the demo's end: the web console moves to another port, and the model in production is asked about it again
DEMO_UPDATE = KnowledgeUpdate(
    document="ferrolink-product-and-setup.md",
    old="The web console is served over HTTPS on TCP port 7410.",
    new="The web console is served over HTTPS on TCP port 7420.",
    question="Which port does the FerroLink web console listen on?",
    checks=[{"type": "number", "value": 7420}, {"type": "not_contains", "values": ["7410"]}],
)
STALE_ROWS_WAIT_SECONDS = 60.0  # the ingestion marks the rows the new version contradicts just after its index


def run_demo(
    settings: Settings, iterations: int = 2, max_steps: int | None = None, dataset: Path = SAMPLE_DATASET
) -> int:
    console = Console(width=max(Console().width, 130))
    started = time.monotonic()
    console.print(f"[bold]WLOps demo[/]: data in {settings.data_dir.resolve()}")
    with Stack(settings) as stack:
        # the demo's login is kept in its data directory, not in the user's own credentials
        client_settings = settings.model_copy(
            update={
                "api_url": f"http://{settings.api_host}:{settings.api_port}",
                "config_dir": settings.data_dir / "cli",
                "api_key": None,
            }
        )
        with ApiClient(settings=client_settings) as api, _stop_on_api_errors():
            api.login(settings.dev_username, settings.dev_password, settings.dev_org)
            console.print(
                f"logged in as development owner [cyan]{settings.dev_username}[/] of organization {settings.dev_org!r}"
            )
            with open(dataset, "rb") as fh:
                upload = api.call(
                    "POST",
                    "/api/v1/datasets",
                    files={"file": (dataset.name, fh, "application/jsonl")},
                    data={"name": "FerroLink support FAQ", "domain": "product-support"},
                )
            console.print(
                f"uploaded [cyan]{dataset.name}[/]: {upload['sample_count']} rows → dataset {upload['dataset_id']}"
            )
            kb = _knowledge_base(api, stack, console)
            hyperparameters = {
                **DEMO_HYPERPARAMETERS,
                "max_seq_length": DEMO_RAG["max_seq_length"],
                **({"max_steps": max_steps} if max_steps else {}),
            }
            task = api.call(
                "POST",
                "/api/v1/tasks/continuous",
                json={
                    "task_name": "FerroLink support assistant",
                    "model_name": "smollm2-135m-instruct",
                    "dataset_id": upload["dataset_id"],
                    "hyperparameters": hyperparameters,
                    "max_iterations": iterations,
                    "performance_threshold": 0.95,
                    "knowledge_base_id": kb["knowledge_base_id"],
                    "retrieval_top_k": DEMO_RAG["retrieval_top_k"],
                    "context_statements": DEMO_RAG["context_statements"],
                    "register_as": DEMO_MODEL,
                },
            )
            task_id = task["task_id"]
            api.call("POST", f"/api/v1/tasks/{task_id}/start")
            console.print(
                f"started continuous task {task_id} ({iterations} iterations max)\n  Temporal Web UI: "
                f"{task['workflow_url']}"
            )
            final = _follow(api, stack, task_id, console)
            completed = final["status"] == TaskStatus.COMPLETED
            report = (
                StoredTaskReport.model_validate(api.call("GET", f"/api/v1/tasks/{task_id}/report"))
                if completed
                else None
            )
            if report is not None:
                console.print(_iteration_table(report))
                gate = _promote(api, console)
                reference = DEMO_MODEL if gate["status"] == "PROMOTED" else f"{DEMO_MODEL}@{gate['candidate_version']}"
                held_out = report.side_by_side[0] if report.side_by_side else None
                question = held_out.question if held_out else "Which port does the FerroLink web console listen on?"
                _ask(
                    settings,
                    api,
                    reference,
                    question,
                    _checks_of(dataset).get(normalize_text(question).casefold()),
                    console,
                    "a held-out test question",
                    expected=held_out.expected if held_out else None,
                )
                _knowledge_update(settings, api, stack, kb, reference, console)
    elapsed = time.monotonic() - started
    if report is None:
        console.print(f"[red]task ended {final['status']}[/]: {final.get('error')}")
        return 1
    beats, tuned, base = report.final.beats_baseline, report.kept_iteration().scores["test"], report.baseline.scores
    console.print(
        f"\nkept iteration's test split, {report.final.mode.replace('_', ' ')}: {_share(tuned)} answers right "
        f"({report.final.grade}) vs base model "
        f"{_share(base)} in the same mode: "
        + ("[green]beats the baseline[/]" if beats else "[red]does not beat the baseline[/]")
        + f"; blended wording score {tuned.overall:.4f} vs {base.overall:.4f}"
    )
    console.print(f"stopped because: {report.task.stop_reason}")
    if report.final.iteration is not None:
        console.print(f"kept iteration {report.final.iteration} (registered, before the gate): {report.final.because}")
    console.print(f"report: {report.markdown_path}  (JSON: {report.report_path})")
    console.print(f"run in the Temporal Web UI: {final['workflow_url']}")
    console.print(f"demo took {elapsed / 60:.1f} min")
    return 0 if beats else 1


@contextmanager
def _stop_on_api_errors() -> Iterator[None]:
    """A refusal of the API ends the demo with the API's words."""
    try:
        yield
    except ApiError as exc:
        raise SystemExit(f"API error{f' {exc.status}' if exc.status else ''}: {exc}") from exc


def _ok(response: httpx.Response) -> dict:
    """The serving process's answer (its own, OpenAI-shaped errors end the demo with their text)."""
    if response.status_code >= 400:
        raise SystemExit(
            f"API error {response.status_code} on {response.request.method} {response.request.url}: {response.text}"
        )
    return response.json()


def _promote(api: ApiClient, console: Console) -> dict:
    """The final adapter was registered when the task completed: ask the promotion gate to put it in production."""
    version = api.call("GET", f"/api/v1/models/{DEMO_MODEL}")["latest_version"]
    gate = api.call("POST", f"/api/v1/models/{DEMO_MODEL}/versions/{version}/promote", json={"alias": "production"})
    console.print(
        f"registered [cyan]{DEMO_MODEL}@{version}[/]; the promotion gate evaluates it against the base model on its "
        f"locked test split…"
    )
    gate = gate_decision(api, DEMO_MODEL, gate)
    colour = "green" if gate["status"] == "PROMOTED" else "red"
    console.print(f"gate: [{colour}]{gate['status']}[/] — {gate['reason']}")
    return gate


def _ask(
    settings: Settings,
    api: ApiClient,
    model: str,
    question: str,
    checks: list[dict] | None,
    console: Console,
    what: str,
    expected: str | None = None,
) -> None:
    """One question through the OpenAI-compatible endpoint of `wlops serve`, with the passages it was answered from, and
    its verdict by `checks`."""
    url = f"http://{settings.serve_host}:{settings.serve_port}/v1/chat/completions"
    tokens = api.credentials.tokens(api.url)
    if tokens is None:
        raise SystemExit(f"no stored login for {api.url}: the demo logs in before it asks")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    answer = _ok(
        httpx.post(
            url,
            headers=headers,
            timeout=120,
            json={
                "model": model,
                "max_tokens": 48,
                "temperature": 0,
                "messages": [{"role": "user", "content": question}],
            },
        )
    )
    lines = [
        f"asked [cyan]{answer['model']}[/] through {url} ({what}):",
        f"  Q: {question}",
        f"  A: {answer['choices'][0]['message']['content']}",
        *([f"  expected: {expected}"] if expected else []),
        "  sources: " + "; ".join(f"{s['filename']} > {s['heading']} ({s['score']:.2f})" for s in answer["sources"]),
    ]
    if checks:
        verdict = judge(answer["choices"][0]["message"]["content"], parse_checks(checks))
        failed = next((f"{c.type}: {r.detail}" for c, r in verdict.results if not r.passed), "")
        lines.append("  verdict: " + ("[green]right[/]" if verdict.right else f"[red]wrong[/] ({failed})"))
    console.print("\n" + "\n".join(lines))


def _knowledge_update(settings: Settings, api: ApiClient, stack: Stack, kb: dict, model: str, console: Console) -> None:
    """One fact of one document changes (`DEMO_UPDATE`): the new version is uploaded, the index rebuilt, the dataset
    rows it contradicts are listed as stale, and the model in production is asked about the fact again. It answers
    from the new index version's passages; its adapter is not re-trained here (a task with `retrain_on_change` would
    be: `bench/knowledge_update` measures that path)."""
    kb_id, name = kb["knowledge_base_id"], DEMO_UPDATE.document
    text = (SAMPLE_KNOWLEDGE / name).read_text()
    if DEMO_UPDATE.old not in text:
        raise SystemExit(f"the demo's knowledge update expects {DEMO_UPDATE.old!r} in {name}")
    api.call(
        "POST",
        f"/api/v1/knowledge-bases/{kb_id}/documents",
        files={"file": (name, text.replace(DEMO_UPDATE.old, DEMO_UPDATE.new).encode())},
    )
    console.print(f"\nknowledge update: {name} changes — [red]{DEMO_UPDATE.old}[/] → [green]{DEMO_UPDATE.new}[/]")
    started = time.monotonic()
    _wait_for_index(api, stack, kb_id, kb["version"] + 1)
    stale: list[dict] = []
    while not stale and time.monotonic() - started < STALE_ROWS_WAIT_SECONDS:
        stack.check()
        stale = api.call("GET", f"/api/v1/knowledge-bases/{kb_id}/stale-rows")["items"]
        if not stale:
            time.sleep(0.5)
    console.print(
        f"index version {kb['version'] + 1} built in {time.monotonic() - started:.0f} s; {len(stale)} dataset rows the "
        f"new version contradicts are excluded from training until reviewed (wlops knowledge stale-rows {kb_id}):"
    )
    for row in stale[:3]:
        console.print(f"  {row['question']!r}: {row['old_value']} → {row['new_value']}")
        if row["proposed_answer"]:
            console.print(f"    proposed correction: {row['proposed_answer']!r}")
    proposed = sum(1 for row in stale if row["proposed_answer"])
    console.print(
        f"{proposed} of them have a proposed correction; accept them with "
        f"wlops knowledge stale-rows {kb_id} --accept-proposals --reason '…'"
    )
    _ask(
        settings,
        api,
        model,
        DEMO_UPDATE.question,
        DEMO_UPDATE.checks,
        console,
        "after the update, from the new index; the adapter is not re-trained",
    )


def _checks_of(dataset: Path) -> dict[str, list[dict]]:
    """The fact checks of each question of the dataset file (normalised question -> checks), for the rows that carry
    them.
    """
    out = {}
    for row in read_rows(dataset, "jsonl"):
        try:
            question, _ = record_to_pair(row.record or {})
            checks = record_checks(row.record or {})
        except ValueError:
            continue
        if checks:
            out[normalize_text(question).casefold()] = checks
    return out


def _follow(api: ApiClient, stack: Stack, task_id: str, console: Console) -> dict:
    """Follow the task's event stream to its end, with a progress bar of the running phase; the task as it ended."""
    with EventProgress(console) as view:
        for event in task_events(api, task_id):
            stack.check()
            view.show(event, event.json())
    return api.call("GET", f"/api/v1/tasks/{task_id}")


def _knowledge_base(api: ApiClient, stack: Stack, console: Console) -> dict:
    """The sample's documents in a new knowledge base, once its index is built."""
    kb = api.call("POST", "/api/v1/knowledge-bases", json=DEMO_KNOWLEDGE_BASE)
    for path in sorted(p for p in SAMPLE_KNOWLEDGE.iterdir() if p.is_file()):
        with open(path, "rb") as fh:
            api.call(
                "POST", f"/api/v1/knowledge-bases/{kb['knowledge_base_id']}/documents", files={"file": (path.name, fh)}
            )
    kb = _wait_for_index(api, stack, kb["knowledge_base_id"], 1)
    documents = api.call("GET", f"/api/v1/knowledge-bases/{kb['knowledge_base_id']}/documents")["items"]
    formats = ", ".join(d["filename"].rsplit(".", 1)[1] for d in documents)
    console.print(
        f"knowledge base [cyan]{kb['name']}[/]: {kb['document_count']} documents ({formats}) → {kb['chunk_count']} "
        f"chunks, "
        f"index version {kb['version']}"
    )
    return kb


def _wait_for_index(api: ApiClient, stack: Stack, kb_id: str, version: int) -> dict:
    """The knowledge base once its index version `version` (or a later one) is built."""
    while True:
        kb = api.call("GET", f"/api/v1/knowledge-bases/{kb_id}")
        if kb["status"] == "READY" and kb["version"] >= version:
            return kb
        if kb["status"] == "BUILD_FAILED":
            raise SystemExit(f"the knowledge base's build failed: {kb['error']}")
        stack.check()
        time.sleep(0.5)


def _iteration_table(report: StoredTaskReport) -> Table:
    """Test-split figures per iteration: the share of right answers (by their fact checks) in each mode, the serving
    mode's first, with its 95% interval; the wrong answers whose passages stated their facts (misread) and those whose
    passages did not (not retrieved); then the blended wording score, secondary (its metrics are in the report)."""
    mode = report.final.mode
    modes = [mode] + [m for m in report.baseline.modes if m != mode]
    table = Table(
        title=f"Iterations: test-split answers right, against the base model ({mode.replace('_', ' ')} is the headline)"
    )
    table.add_column("iter", justify="right")
    for column in (
        *(f"right, {m.replace('_', ' ')}" for m in modes),
        "95% interval",
        "Δ base",
        "wrong: misread / not retrieved",
        "feedback right",
        "blended",
        "grade",
        "recall@k",
        "steps",
    ):
        table.add_column(column, justify="right")
    base = report.baseline.scores

    def row(label: str, by_mode: dict, test, feedback, grade: str = "", retrieval=None, steps: str = "") -> list[str]:
        low, high = test.fact_accuracy_interval or (None, None)
        delta = (
            test.fact_accuracy - base.fact_accuracy
            if label != "base" and test.fact_accuracy is not None and base.fact_accuracy is not None
            else None
        )
        return [
            label,
            *(_share(by_mode[m]["test"]) if m in by_mode else "" for m in modes),
            f"[{low:.2f}, {high:.2f}]" if low is not None else "",
            f"{delta:+.3f}" if delta is not None else "",
            f"{test.reading_errors} / {test.retrieval_misses}" if test.reading_errors is not None else "",
            _share(feedback),
            f"{test.overall:.4f}",
            grade,
            f"{retrieval.recall_at_k:.3f}" if retrieval and retrieval.recall_at_k is not None else "",
            steps,
        ]

    table.add_row(*row("base", report.baseline.modes, base, report.baseline.feedback_scores))
    for it in report.iterations:
        table.add_row(
            *row(
                f"{it.iteration} (kept)" if it.iteration == report.final.iteration else str(it.iteration),
                it.modes,
                it.scores["test"],
                it.scores["feedback"],
                it.headline.grade,
                it.retrieval.get("test"),
                str(it.training.steps),
            )
        )
    return table


def _share(scores) -> str:
    """`0.553 (26/47)`: the share of right answers and the counts (the blended score where there are no fact checks)."""
    if scores.fact_accuracy is None:
        return f"blended {scores.overall:.4f}"
    return f"{scores.fact_accuracy:.3f} ({scores.right}/{scores.judged})"
