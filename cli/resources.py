"""`wlops login | logout | datasets | tasks | knowledge | models | suites | releases | lineage | erase |
erase-document | erase-user | erasures | retention`: the resources, over the HTTP API only (`cli/api_client.py`).

Every command takes `--api URL` and `--json` (the API's JSON, one document per line, for scripts); without `--json` it
prints a table or a summary. Errors go to stderr with the API's message, exit status 1.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from cli.api_client import ApiClient, ApiError
from cli.watch import EventLines, EventProgress, task_events
from schemas.api import LineageKind

View = Callable[[Console, Any], None]
Handler = Callable[[ApiClient, argparse.Namespace], "int | None"]

# The columns of each kind of row in a listing.
COLUMNS: dict[str, tuple[str, ...]] = {
    "datasets": ("dataset_id", "name", "status", "version", "sample_count", "file_format", "domain"),
    "dataset versions": ("version", "parent_version", "kind", "row_count", "changes", "reason", "created_at"),
    "rows": ("row_id", "question", "answer", "checks", "tags", "excluded"),
    "tasks": (
        "task_id",
        "task_name",
        "mode",
        "status",
        "current_iteration",
        "max_iterations",
        "latest_score",
        "baseline_score",
    ),
    "knowledge bases": ("knowledge_base_id", "name", "status", "version", "document_count", "chunk_count"),
    "documents": ("document_id", "filename", "version", "status", "chunk_count", "error"),
    "results": ("rank", "score", "filename", "heading_path", "text"),
    "stale rows": (
        "state",
        "dataset_id",
        "row_id",
        "question",
        "old_value",
        "new_value",
        "proposed_answer",
        "document_name",
        "document_version",
    ),
    "models": ("name", "base_model", "latest_version", "aliases"),
    "versions": ("version", "status", "task_id", "iteration", "serving_mode", "aliases"),
    "gates": ("gate_id", "alias", "candidate_version", "current_version", "status", "reason"),
    "erasures": ("erasure_id", "target", "reason", "model_versions", "created_at"),
    "suites": ("name", "version", "blocking", "case_count", "content_hash", "description"),
    "cases": ("id", "question", "assertions"),
    "suite runs": ("run_id", "suite_version", "model", "status", "passed", "failed", "total", "created_at"),
    "case results": ("case_id", "passed", "latency_ms", "answer", "why"),
    "releases": (
        "release_id",
        "alias",
        "current_version",
        "candidate_version",
        "steps",
        "candidate_weight",
        "status",
        "reason",
    ),
    "decisions": ("at", "kind", "step", "candidate_weight", "status", "current", "candidate", "reason"),
}
METRICS = {"exact_match": "EM", "token_f1": "token F1", "bleu": "BLEU", "rouge_l": "ROUGE-L", "overall": "overall"}
GATE_POLL_SECONDS = 1.0
RUN_POLL_SECONDS = 1.0
RELEASE_POLL_SECONDS = 2.0
RELEASE_ACTIVE = ("PENDING", "RUNNING", "PAUSED")


def url(*parts: object) -> str:
    """An API path from its parts, each one escaped (an id can never reach another route)."""
    return "/api/v1/" + "/".join(quote(str(p), safe="") for p in parts)


def given(**fields: Any) -> dict[str, Any]:
    """The fields that were given: the API applies its own defaults to the rest."""
    return {k: v for k, v in fields.items() if v is not None}


# --- output --------------------------------------------------------------------------------------


def output(args: argparse.Namespace, data: Any, view: View) -> None:
    if args.json:
        print(json.dumps(data), flush=True)
    else:
        view(Console(), data)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, (dict, list)):
        return json.dumps(value) if value else ""
    return str(value)


def table(rows: list[dict], columns: tuple[str, ...], title: str | None = None) -> Table:
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column, overflow="fold")  # ids are copied from here: never cut short
    for row in rows:
        grid.add_row(*(cell(row.get(c)) for c in columns))
    return grid


def record(data: dict) -> Table:
    grid = Table.grid(padding=(0, 2))
    for key, value in data.items():
        grid.add_row(f"[bold]{key}[/]", cell(value))
    return grid


def listing(kind: str) -> View:
    return lambda console, data: console.print(
        table(data["items"], COLUMNS[kind], f"{kind}: {data.get('total', len(data['items']))}")
    )


def details(console: Console, data: dict) -> None:
    console.print(record(data))


def details_with(key: str, columns: tuple[str, ...] | None = None) -> View:
    """A record, then its `key` (a list of rows, e.g. a dataset's preview) as a table."""

    def view(console: Console, data: dict) -> None:
        console.print(record({k: v for k, v in data.items() if k != key}))
        if rows := data.get(key):
            console.print(table(rows, columns or tuple(rows[0]), key))

    return view


def action_view(console: Console, action: dict) -> None:
    console.print(f"task {action['task_id']}: [bold]{action['status']}[/] — {action['detail']}")


# --- login -------------------------------------------------------------------------------------


def login(api: ApiClient, args: argparse.Namespace) -> None:
    username = args.username or input("username: ")
    password = args.password if args.password is not None else getpass.getpass(f"password for {username}: ")
    tokens = api.login(username, password, args.org)
    output(
        args,
        tokens,
        lambda console, t: console.print(
            f"logged in to {api.url} as [cyan]{username}[/] ({t['role']} of organization {t['org_id']}); credentials "
            f"in {api.credentials.path}"
        ),
    )


def logout(api: ApiClient, args: argparse.Namespace) -> None:
    done = api.logout()
    output(
        args,
        {"api_url": api.url, "logged_out": done},
        lambda console, _: console.print(f"logged out of {api.url}" if done else f"not logged in to {api.url}"),
    )


# --- datasets ----------------------------------------------------------------------------------


def existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {value}")
    return path


def datasets_upload(api: ApiClient, args: argparse.Namespace) -> None:
    with open(args.file, "rb") as fh:
        form = given(name=args.name or args.file.stem, domain=args.domain)
        output(args, api.call("POST", url("datasets"), files={"file": (args.file.name, fh)}, data=form), details)


def datasets_list(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("datasets"), params={"limit": args.limit}), listing("datasets"))


def datasets_show(api: ApiClient, args: argparse.Namespace) -> None:
    dataset = api.call("GET", url("datasets", args.id))
    if args.preview:
        dataset["preview"] = api.call("GET", url("datasets", args.id, "preview"), params={"limit": args.preview})[
            "rows"
        ]
    output(args, dataset, details_with("preview"))


def datasets_versions(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("datasets", args.id, "versions")), listing("dataset versions"))


def datasets_new_version(api: ApiClient, args: argparse.Namespace) -> None:
    with open(args.file, "rb") as fh:
        form = given(reason=args.reason, base_version=args.base_version)
        output(
            args,
            api.call("POST", url("datasets", args.id, "versions"), files={"file": (args.file.name, fh)}, data=form),
            details,
        )


def datasets_diff(api: ApiClient, args: argparse.Namespace) -> None:
    params = given(from_version=args.from_version, to_version=args.to_version, limit=args.limit)
    diff = api.call("GET", url("datasets", args.id, "diff"), params=params)

    def view(console: Console, d: dict) -> None:
        counts = ", ".join(f"{n} {what}" for what, n in d["counts"].items())
        console.print(f"dataset {d['dataset_id']}: version {d['from_version']} → {d['to_version']}: {counts}")
        for sign, key in (("+", "added"), ("-", "removed")):
            for row in d[key]:
                console.print(f"{sign} {row['row_id']}: {json.dumps(row['record'], ensure_ascii=False)}")
        for row in d["changed"]:
            for name in row["fields"]:
                console.print(
                    f"~ {row['row_id']} {name}: {json.dumps(row['before'].get(name), ensure_ascii=False)} → "
                    f"{json.dumps(row['after'].get(name), ensure_ascii=False)}"
                )

    output(args, diff, view)


def datasets_rows(api: ApiClient, args: argparse.Namespace) -> None:
    version = args.version or api.call("GET", url("datasets", args.id))["version"]
    params = given(limit=args.limit, offset=args.offset, tag=args.tag, excluded=args.excluded)
    rows = api.call("GET", url("datasets", args.id, "versions", version, "rows"), params=params)
    for row in rows["items"]:  # the table shows each check in one line
        row["checks"] = "; ".join(
            ("(derived) " if c.get("derived") else "") + json.dumps({k: v for k, v in c.items() if k != "derived"})
            for c in row["checks"]
        )
    output(args, rows, listing("rows"))


def datasets_annotate(api: ApiClient, args: argparse.Namespace) -> None:
    edit: dict[str, Any] = given(row_id=args.row, answer=args.answer)
    if args.checks is not None:
        edit["checks"] = args.checks
    if args.tag:
        edit["add_tags"] = args.tag
    if args.untag:
        edit["remove_tags"] = args.untag
    if args.exclude or args.include:
        edit["excluded"] = bool(args.exclude)
    body = given(reason=args.reason, base_version=args.base_version, edits=[edit])
    output(args, api.call("POST", url("datasets", args.id, "annotations"), json=body), details)


def datasets_download(api: ApiClient, args: argparse.Namespace) -> None:
    version = args.version or api.call("GET", url("datasets", args.id))["version"]
    path = url("datasets", args.id, "versions", version, "download")
    with api.reaching(), api.http.stream("GET", path, params={"format": args.format}) as response:
        api.check(response)
        lines = 0
        with open(args.output, "wb") as out:
            for chunk in response.iter_bytes():
                out.write(chunk)
                lines += chunk.count(b"\n")
    result = {"dataset_id": args.id, "version": version, "format": args.format, "path": str(args.output), "rows": lines}
    output(args, result, details)


def json_list(value: str) -> list:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(parsed, list):
        raise argparse.ArgumentTypeError(
            'expected a JSON list of checks, e.g. \'[{"type": "polarity", "value": "no"}]\''
        )
    return parsed


# --- tasks ---------------------------------------------------------------------------------------


def hyperparameter(value: str) -> tuple[str, Any]:
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {value!r}")
    try:
        return key, json.loads(raw)  # numbers and booleans as such
    except ValueError:
        return key, raw


def tasks_create(api: ApiClient, args: argparse.Namespace) -> int | None:
    body = given(
        task_name=args.name,
        dataset_id=args.dataset,
        model_name=args.model,
        hyperparameters=dict(args.hp),
        max_iterations=args.max_iterations,
        performance_threshold=args.threshold,
        knowledge_base_id=args.knowledge_base,
    )
    task = api.call("POST", url("tasks", "continuous" if args.continuous else "standard"), json=body)
    output(args, task, details)
    return start_task(api, args, task["task_id"]) if args.start or args.watch else None


def tasks_start(api: ApiClient, args: argparse.Namespace) -> int | None:
    return start_task(api, args, args.id)


def start_task(api: ApiClient, args: argparse.Namespace, task_id: str) -> int | None:
    output(args, api.call("POST", url("tasks", task_id, "start")), action_view)
    return watch_task(api, args, task_id) if args.watch else None


def tasks_feedback_round(api: ApiClient, args: argparse.Namespace) -> int | None:
    body = given(dataset_id=args.dataset, dataset_version=args.version, task_name=args.name)
    task = api.call("POST", url("tasks", args.id, "feedback-rounds"), json=body)
    output(args, task, details)
    return watch_task(api, args, task["task_id"]) if args.watch else None


def task_action(verb: str) -> Handler:
    return lambda api, args: output(args, api.call("POST", url("tasks", args.id, verb)), action_view)


def tasks_show(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("tasks", args.id)), details)


def tasks_list(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("tasks"), params=given(limit=args.limit, status=args.status)), listing("tasks"))


def tasks_report(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("tasks", args.id, "report")), show_report)


def show_report(console: Console, report: dict) -> None:
    grid = Table(title=f"task {report['task']['task_id']}: test split", title_justify="left")
    grid.add_column("", no_wrap=True)
    for label in (*METRICS.values(), "feedback"):
        grid.add_column(label, justify="right", min_width=len(label))
    base = report["baseline"]
    grid.add_row("base model", *(cell(base["scores"][m]) for m in METRICS), cell(base["feedback_scores"]["overall"]))
    for it in report["iterations"]:
        test, feedback = it["scores"]["test"], it["scores"].get("feedback", {})
        grid.add_row(f"iteration {it['iteration']}", *(cell(test[m]) for m in METRICS), cell(feedback.get("overall")))
    final = report["final"]
    console.print(grid)
    console.print(
        f"final score {final['score']:.4f} ({final['grade']}, {final['mode'].replace('_', ' ')}): "
        + ("beats the base model" if final["beats_baseline"] else "does not beat the base model")
    )
    if final.get("iteration") is not None:
        console.print(f"kept iteration {final['iteration']} (registered): {final['because']}")
    console.print(f"stopped because: {report['task'].get('stop_reason')}\nreport: {report['markdown_path']}")


def tasks_watch(api: ApiClient, args: argparse.Namespace) -> int:
    return watch_task(api, args, args.id)


def watch_task(api: ApiClient, args: argparse.Namespace, task_id: str) -> int:
    """Follow the task's events until its final one: 0 when it completed, 1 when it failed or was cancelled."""
    view = EventLines() if args.json else EventProgress(Console())
    with view:  # closed before anything goes to stderr: a live progress display redirects it
        for event in task_events(api, task_id):
            final = event.json()
            view.show(event, final)
    if final["status"] != "COMPLETED":
        print(f"task {task_id} {final['status']}: {final.get('error') or 'no error recorded'}", file=sys.stderr)
        return 1
    return 0


# --- knowledge bases ----------------------------------------------------------------------------


def knowledge_create(api: ApiClient, args: argparse.Namespace) -> None:
    body = given(
        name=args.name,
        description=args.description,
        chunk_tokens=args.chunk_tokens,
        chunk_overlap_tokens=args.chunk_overlap_tokens,
    )
    output(args, api.call("POST", url("knowledge-bases"), json=body), details)


def knowledge_list(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("knowledge-bases"), params={"limit": args.limit}), listing("knowledge bases"))


def knowledge_show(api: ApiClient, args: argparse.Namespace) -> None:
    kb = api.call("GET", url("knowledge-bases", args.id))
    kb["documents"] = api.call("GET", url("knowledge-bases", args.id, "documents"))["items"]
    output(args, kb, details_with("documents", COLUMNS["documents"]))


def knowledge_upload(api: ApiClient, args: argparse.Namespace) -> None:
    for path in args.files:
        with open(path, "rb") as fh:
            output(
                args,
                api.call("POST", url("knowledge-bases", args.id, "documents"), files={"file": (path.name, fh)}),
                lambda console, doc: console.print(
                    f"{doc['filename']}: document {doc['document_id']} version {doc['version']}, {doc['status']}"
                ),
            )


def knowledge_search(api: ApiClient, args: argparse.Namespace) -> None:
    found = api.call("POST", url("knowledge-bases", args.id, "search"), json={"query": args.query, "top_k": args.top_k})
    output(
        args,
        found,
        lambda console, data: console.print(
            table(data["results"], COLUMNS["results"], f"index version {data['version']}")
        ),
    )


CORRECTION_REASON = "each correction is a new row version, with who and why"


def knowledge_stale_rows(api: ApiClient, args: argparse.Namespace) -> int | None:
    if not args.accept_proposals:
        params = given(state=args.state)
        output(
            args, api.call("GET", url("knowledge-bases", args.id, "stale-rows"), params=params), listing("stale rows")
        )
        return None
    if not args.reason:
        print(f"wlops: --accept-proposals needs --reason: {CORRECTION_REASON}", file=sys.stderr)
        return 1
    done = api.call(
        "POST",
        url("knowledge-bases", args.id, "stale-rows", "accept-proposals"),
        json={"reason": args.reason, "row_ids": args.row or None},
    )
    output(
        args,
        done,
        lambda console, data: console.print(
            f"accepted {len(data['accepted'])} proposed corrections in {len(data['dataset_versions'])} dataset "
            "version(s)"
            + (
                f"; no proposal for {', '.join(r['row_id'] for r in data['without_proposal'])}: correct them by hand"
                if data["without_proposal"]
                else ""
            )
        ),
    )
    return None


# --- the model registry --------------------------------------------------------------------------


def models_list(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("models"), params={"limit": args.limit}), listing("models"))


def models_show(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("models", args.name)), details)


def models_versions(api: ApiClient, args: argparse.Namespace) -> None:
    if args.version:
        output(args, api.call("GET", url("models", args.name, "versions", args.version)), details)
    else:
        output(
            args,
            api.call("GET", url("models", args.name, "versions"), params={"limit": args.limit}),
            listing("versions"),
        )


def models_promote(api: ApiClient, args: argparse.Namespace) -> int | None:
    body = given(alias=args.alias, force=args.force, reason=args.reason)
    gate = api.call("POST", url("models", args.name, "versions", args.version, "promote"), json=body)
    if args.wait:
        gate = gate_decision(api, args.name, gate)
    output(args, gate, details)
    return 1 if args.wait and gate["status"] != "PROMOTED" else None


def gate_decision(api: ApiClient, model: str, gate: dict) -> dict:
    """The promotion gate once it has decided (or failed), polled every GATE_POLL_SECONDS."""
    while gate["status"] == "EVALUATING":
        time.sleep(GATE_POLL_SECONDS)
        gate = api.call("GET", url("models", model, "gates", gate["gate_id"]))
    return gate


def models_rollback(api: ApiClient, args: argparse.Namespace) -> None:
    output(
        args,
        api.call("POST", url("models", args.name, "aliases", args.alias, "rollback"), json=given(reason=args.reason)),
        lambda console, alias: console.print(f"{args.name}@{alias['alias']} → version {alias['version']}"),
    )


def models_update(api: ApiClient, args: argparse.Namespace) -> None:
    body = given(name=args.rename, description=args.description)
    output(args, api.call("PATCH", url("models", args.name), json=body), details)


def models_delete(api: ApiClient, args: argparse.Namespace) -> None:
    api.call("DELETE", url("models", args.name))
    output(args, {"deleted": args.name}, lambda console, _: console.print(f"deleted model {args.name}"))


def lineage_show(api: ApiClient, args: argparse.Namespace) -> None:
    graph = api.call("GET", url("lineage", args.kind, args.id))

    def view(console: Console, g: dict) -> None:
        names = {(n["kind"], n["id"]): f"{n['label']} ({n['kind'].replace('_', ' ')})" for n in g["nodes"]}
        console.print(f"[bold]{names[(g['root']['kind'], g['root']['id'])]}[/]: {len(g['nodes'])} nodes")
        for e in g["edges"]:
            console.print(f"  {names[(e['from_kind'], e['from_id'])]} → {names[(e['to_kind'], e['to_id'])]}")

    output(args, graph, view)


def erase_row(api: ApiClient, args: argparse.Namespace) -> None:
    body = {"dataset_id": args.dataset, "row_id": args.row, "reason": args.reason}
    output(args, api.call("POST", url("erasures"), json=body), details)


def erase_document(api: ApiClient, args: argparse.Namespace) -> None:
    body = {"knowledge_base_id": args.kb, "document_id": args.document, "reason": args.reason}
    output(args, api.call("POST", url("erasures", "documents"), json=body), details)


def erase_user(api: ApiClient, args: argparse.Namespace) -> None:
    body = {"user_id": args.user, "reason": args.reason}
    output(args, api.call("POST", url("erasures", "users"), json=body), details)


KEEP = object()  # a retention option not given: the limit stays as it is


def retention_days(text: str) -> int | None:
    """A retention limit on the command line: a number of days, or `forever` (no limit)."""
    if text == "forever":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of days (1 or more), or 'forever'")
    return int(text)


def retention_show(api: ApiClient, args: argparse.Namespace) -> None:
    """The signed-in organization's retention limits and latest passes; with --qa-days or --events-days, set them."""
    org_id = api.call("GET", url("auth", "me"))["org_id"]
    changes = {
        field: value
        for field, value in (("qa_retention_days", args.qa_days), ("event_retention_days", args.events_days))
        if value is not KEEP
    }
    if changes:
        api.call("PATCH", url("orgs", org_id), json=changes)
    output(args, api.call("GET", url("orgs", org_id, "retention")), details_with("runs"))


def judge_show(api: ApiClient, args: argparse.Namespace) -> None:
    """The organization's judge; with --url and --model, set it (the API key from the environment variable
    --api-key-env names, never the command line); with --clear, remove it."""
    org_id = api.call("GET", url("auth", "me"))["org_id"]
    if args.clear:
        api.call("DELETE", url("orgs", org_id, "judge"))
    elif args.url or args.model:
        if not (args.url and args.model):
            raise SystemExit("setting a judge takes both --url and --model")
        body = {"url": args.url, "model": args.model}
        if args.api_key_env:
            key = os.environ.get(args.api_key_env)
            if not key:
                raise SystemExit(f"the environment variable {args.api_key_env} is not set")
            body["api_key"] = key
        api.call("PUT", url("orgs", org_id, "judge"), json=body)
    output(args, api.call("GET", url("orgs", org_id, "judge")), details)


def erasures_list(api: ApiClient, args: argparse.Namespace) -> None:
    items = api.call("GET", url("erasures"))
    output(args, {"items": items, "total": len(items)}, listing("erasures"))


def models_gates(api: ApiClient, args: argparse.Namespace) -> None:
    if args.gate_id:
        output(args, api.call("GET", url("models", args.name, "gates", args.gate_id)), details)
    else:
        output(args, api.call("GET", url("models", args.name, "gates"), params={"limit": args.limit}), listing("gates"))


def models_suites(api: ApiClient, args: argparse.Namespace) -> None:
    output(
        args,
        api.call("PUT", url("models", args.name, "aliases", args.alias, "suites"), json={"suites": args.suites}),
        lambda console, d: console.print(
            f"{d['model_name']}@{d['alias']} requires: {', '.join(d['suites']) or 'no suites'}"
        ),
    )


# --- releases ------------------------------------------------------------------------------------


def weights(value: str) -> list[int]:
    try:
        return [int(part) for part in value.split(",")]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected whole percentages separated by commas, e.g. 10,50,100: {exc}"
        ) from exc


def releases_start(api: ApiClient, args: argparse.Namespace) -> int | None:
    body = given(
        candidate_version=args.version,
        alias=args.alias,
        steps=args.steps,
        bake_seconds=args.bake_seconds,
        min_requests=args.min_requests,
        max_wait_seconds=args.max_wait_seconds,
    )
    release = api.call("POST", url("models", args.name, "releases"), json=body)
    if args.watch:
        return watch_release(api, args, release)
    output(args, release, show_release)
    return None


def releases_list(api: ApiClient, args: argparse.Namespace) -> None:
    if args.release_id:
        output(args, api.call("GET", url("models", args.name, "releases", args.release_id)), show_release)
    else:
        output(
            args,
            api.call("GET", url("models", args.name, "releases"), params={"limit": args.limit}),
            listing("releases"),
        )


def releases_watch(api: ApiClient, args: argparse.Namespace) -> int | None:
    return watch_release(api, args, api.call("GET", url("models", args.name, "releases", args.release_id)))


def watch_release(api: ApiClient, args: argparse.Namespace, release: dict) -> int | None:
    """Print each decision as it is made until the release ends (exit 0 when PROMOTED); a PAUSED release is waited
    on too: someone resumes or aborts it."""
    shown = 0
    while True:
        for decision in release["decisions"][shown:]:
            if args.json:
                print(json.dumps(decision), flush=True)
            else:
                Console().print(decision_line(decision))
        shown = len(release["decisions"])
        if release["status"] not in RELEASE_ACTIVE:
            if not args.json:
                Console().print(f"release {release['release_id']}: [bold]{release['status']}[/] — {release['reason']}")
            return None if release["status"] == "PROMOTED" else 1
        time.sleep(RELEASE_POLL_SECONDS)
        release = api.call("GET", url("models", args.name, "releases", release["release_id"]))


def decision_line(decision: dict) -> str:
    figures = decision.get("figures") or {}
    arms = "  ".join(
        f"{arm}: {f['requests']} req, errors {cell(f['error_rate'])}, p95 {cell(f['p95_latency_ms'])} ms, "
        f"down {cell(f['down_rate'])}"
        for arm in ("current", "candidate")
        if (f := figures.get(arm))
    )
    return (
        f"{decision['at']}  {decision['kind']:<8} {decision['candidate_weight']:>3}%  {decision['status']:<11} "
        f"{decision['reason']}" + (f"\n    {arms}" if arms else "")
    )


def show_release(console: Console, release: dict) -> None:
    console.print(record({k: v for k, v in release.items() if k not in ("decisions", "thresholds")}))
    rows = [
        {
            **d,
            "step": d["step_index"] + 1,
            **{
                arm: f"{f['requests']} req, err {cell(f['error_rate'])}, p95 {cell(f['p95_latency_ms'])}"
                for arm in ("current", "candidate")
                if (f := (d.get("figures") or {}).get(arm))
            },
        }
        for d in release["decisions"]
    ]
    if rows:
        console.print(table(rows, COLUMNS["decisions"], "decisions"))


def release_action(verb: str) -> Handler:
    def handler(api: ApiClient, args: argparse.Namespace) -> None:
        release = api.call(
            "POST", url("models", args.name, "releases", args.release_id, verb), json=given(reason=args.reason)
        )
        output(args, release, show_release)

    return handler


# --- scenario suites -----------------------------------------------------------------------------


def suites_create(api: ApiClient, args: argparse.Namespace) -> None:
    with open(args.file, "rb") as fh:
        form = given(name=args.name, blocking=str(args.blocking).lower(), description=args.description)
        suite = api.call("POST", url("suites", "import"), files={"file": (args.file.name, fh)}, data=form)
    output(args, suite, show_suite)


def suites_list(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("suites"), params={"limit": args.limit}), listing("suites"))


def suites_show(api: ApiClient, args: argparse.Namespace) -> None:
    output(args, api.call("GET", url("suites", args.name), params=given(version=args.version)), show_suite)


def show_suite(console: Console, suite: dict) -> None:
    console.print(record({k: v for k, v in suite.items() if k != "cases"}))
    rows = [
        {
            "id": case["id"],
            "question": case.get("prompt") or case["messages"][-1]["content"],
            "assertions": ", ".join(
                k for k in ("checks", "refusal", "max_latency_ms", "json_schema") if case.get(k) not in (None, [])
            ),
        }
        for case in suite["cases"]
    ]
    console.print(table(rows, COLUMNS["cases"], "cases"))


def suites_run(api: ApiClient, args: argparse.Namespace) -> int | None:
    body = given(model=args.model, version=args.version)
    run = api.call("POST", url("suites", args.name, "runs"), json=body)
    if args.wait:
        while run["status"] == "RUNNING":
            time.sleep(RUN_POLL_SECONDS)
            run = api.call("GET", url("suites", args.name, "runs", run["run_id"]))
    output(args, run, show_run)
    return 1 if args.wait and (run["status"] != "COMPLETED" or run["failed"]) else None


def suites_runs(api: ApiClient, args: argparse.Namespace) -> None:
    if args.run_id:
        output(args, api.call("GET", url("suites", args.name, "runs", args.run_id)), show_run)
    else:
        output(
            args, api.call("GET", url("suites", args.name, "runs"), params={"limit": args.limit}), listing("suite runs")
        )


def show_run(console: Console, run: dict) -> None:
    console.print(record({k: v for k, v in run.items() if k != "results"}))
    rows = [
        {**r, "why": "; ".join(f"{a['assertion']}: {a['detail']}" for a in r["results"] if not a["passed"])}
        for r in run["results"]
    ]
    if rows:
        console.print(table(rows, COLUMNS["case results"], "cases"))


def suites_compare(api: ApiClient, args: argparse.Namespace) -> None:
    compared = api.call("GET", url("suites", args.name, "compare"), params=given(before=args.before, after=args.after))

    def view(console: Console, c: dict) -> None:
        before, after = c["before"], c["after"]
        console.print(
            f"suite {args.name}: {before['model']} (run {before['run_id']}) → {after['model']} (run {after['run_id']})"
        )
        console.print(", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in c["counts"].items()))
        console.print(f"exact McNemar p = {c['p_value']:.4f}")
        for case, kind in c["cases"].items():
            if kind in ("fixed", "broken"):
                console.print(f"{'+' if kind == 'fixed' else '-'} {case}: {kind}")

    output(args, compared, view)


def suites_export(api: ApiClient, args: argparse.Namespace) -> None:
    with api.reaching():
        response = api.http.get(url("suites", args.name, "export"), params=given(version=args.version))
        api.check(response)
    args.output.write_bytes(response.content)
    result = {"name": args.name, "path": str(args.output), "cases": response.content.count(b"\n")}
    output(args, result, details)


# --- the commands ------------------------------------------------------------------------------


def run(handler: Handler, args: argparse.Namespace) -> None:
    """Run one resource command: the API's refusal is printed to stderr with exit status 1."""
    try:
        with ApiClient(args.api) as api:
            code = handler(api, args)
    except ApiError as exc:
        hint = " (run `wlops login`)" if exc.status == 401 and handler is not login else ""
        print(f"wlops: {exc}{hint}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\nstopped (the server carries on)", file=sys.stderr)
        sys.exit(130)
    if code:
        sys.exit(code)


def add_resource_commands(commands: argparse._SubParsersAction) -> None:
    """Add `login`, `logout`, `datasets`, `tasks`, `knowledge`, `models`, `suites` and the rest to the `wlops`
    parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--api",
        metavar="URL",
        help="the API (default: $WLOPS_API_URL, else the one last logged in to, else http://127.0.0.1:8000)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON (one document per line)")

    def command(group: argparse._SubParsersAction, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser = group.add_parser(name, parents=[common], help=help, description=help)
        parser.set_defaults(func=lambda args: run(handler, args))
        return parser

    def group(name: str, help: str) -> argparse._SubParsersAction:
        return commands.add_parser(name, help=help, description=help).add_subparsers(
            dest=f"{name}_command", required=True
        )

    def with_limit(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--limit", type=int, default=50, help="at most this many (the API allows up to 200)")
        return parser

    parser = command(commands, "login", login, "log in to the API and keep the tokens in the credentials file")
    parser.add_argument("--username")
    parser.add_argument("--password", help="prompted for when left out")
    parser.add_argument("--org", help="organization name or id (needed only for members of several)")
    command(commands, "logout", logout, "revoke the stored login's tokens and forget them")

    datasets = group("datasets", "upload and inspect datasets")
    parser = command(datasets, "upload", datasets_upload, "upload a JSONL, JSON or CSV dataset")
    parser.add_argument("file", type=existing_file)
    parser.add_argument("--name", help="default: the file name without extension")
    parser.add_argument("--domain")
    with_limit(command(datasets, "list", datasets_list, "list the organization's datasets"))
    parser = command(datasets, "show", datasets_show, "show a dataset")
    parser.add_argument("id")
    parser.add_argument("--preview", type=int, metavar="N", help="with its first N rows")
    command(datasets, "versions", datasets_versions, "list a dataset's versions").add_argument("id")
    parser = command(
        datasets, "new-version", datasets_new_version, "upload a file as the next version of a dataset (all its rows)"
    )
    parser.add_argument("id")
    parser.add_argument("file", type=existing_file)
    parser.add_argument("--reason")
    parser.add_argument("--base-version", type=int, metavar="N", help="refuse if the dataset is no longer at N")
    parser = with_limit(command(datasets, "diff", datasets_diff, "rows added, removed and changed between versions"))
    parser.add_argument("id")
    parser.add_argument("--from", dest="from_version", type=int, metavar="N", help="default: the parent of --to")
    parser.add_argument("--to", dest="to_version", type=int, metavar="N", help="default: the newest version")
    parser = with_limit(command(datasets, "rows", datasets_rows, "a version's rows with their fact checks"))
    parser.add_argument("id")
    parser.add_argument("--version", type=int, help="default: the newest")
    parser.add_argument("--offset", type=int)
    parser.add_argument("--tag", help="only rows with this tag")
    parser.add_argument("--excluded", choices=("true", "false"), help="only excluded (true) or included rows")
    parser = command(
        datasets, "annotate", datasets_annotate, "correct a row's answer or checks, tag it, exclude or include it"
    )
    parser.add_argument("id")
    parser.add_argument("--row", required=True, metavar="ROW_ID")
    parser.add_argument("--reason", required=True, help="why: kept with the new version")
    parser.add_argument("--answer", help="the corrected answer")
    parser.add_argument("--checks", type=json_list, metavar="JSON", help="the row's checks, replacing its own")
    parser.add_argument("--tag", action="append", default=[], help="add a tag (repeatable)")
    parser.add_argument("--untag", action="append", default=[], help="remove a tag (repeatable)")
    include = parser.add_mutually_exclusive_group()
    include.add_argument("--exclude", action="store_true", help="leave the row out of training and evaluation")
    include.add_argument("--include", action="store_true", help="bring an excluded row back")
    parser.add_argument("--base-version", type=int, metavar="N", help="refuse if the dataset is no longer at N")
    parser = command(datasets, "download", datasets_download, "download a version as JSONL, alpaca or chat rows")
    parser.add_argument("id")
    parser.add_argument("--version", type=int, help="default: the newest")
    parser.add_argument("--format", choices=("jsonl", "alpaca", "chat"), default="jsonl")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")

    tasks = group("tasks", "create, run, follow and report fine-tuning tasks")
    parser = command(tasks, "create", tasks_create, "create a fine-tuning task")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--standard", action="store_true", help="one iteration")
    mode.add_argument("--continuous", action="store_true", help="iterate on the model's bad cases")
    parser.add_argument("--name", required=True)
    parser.add_argument("--dataset", required=True, metavar="ID")
    parser.add_argument(
        "--model", help="smollm2-135m-instruct (default), gemma3-270m (Gemma Terms of Use) or a local model folder"
    )
    parser.add_argument(
        "--hp",
        type=hyperparameter,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter (repeatable)",
    )
    parser.add_argument("--max-iterations", type=int, metavar="K", help="continuous tasks")
    parser.add_argument(
        "--threshold",
        type=float,
        metavar="X",
        help="continuous tasks: stop once the feedback split's share of right answers reaches it",
    )
    parser.add_argument(
        "--knowledge-base", metavar="ID", help="train and answer with passages from this knowledge base"
    )
    parser.add_argument("--start", action="store_true", help="start it at once")
    parser.add_argument("--watch", action="store_true", help="start it and follow it until it ends")
    parser = command(tasks, "start", tasks_start, "start a task")
    parser.add_argument("id")
    parser.add_argument("--watch", action="store_true", help="follow it until it ends")
    command(
        tasks, "watch", tasks_watch, "follow a task's progress until it ends (exit 0 when it completed)"
    ).add_argument("id")
    command(tasks, "show", tasks_show, "show a task, with its live training progress").add_argument("id")
    for verb in ("pause", "resume", "cancel"):
        command(tasks, verb, task_action(verb), f"{verb} a running task").add_argument("id")
    parser = command(
        tasks,
        "feedback-round",
        tasks_feedback_round,
        "continue a completed task with a dataset of corrected answers (exported from the QA history); started at once",
    )
    parser.add_argument("id")
    parser.add_argument("--dataset", required=True, metavar="ID", help="the corrections dataset")
    parser.add_argument("--version", type=int, metavar="N", help="its version (default: the head)")
    parser.add_argument("--name", help="the new task's name")
    parser.add_argument("--watch", action="store_true", help="follow it until it ends")
    with_limit(command(tasks, "list", tasks_list, "list the organization's tasks")).add_argument(
        "--status", help="only tasks in this status"
    )
    command(
        tasks, "report", tasks_report, "a finished task's report: every iteration against the base model"
    ).add_argument("id")

    knowledge = group("knowledge", "knowledge bases: documents, their index, search")
    parser = command(knowledge, "create", knowledge_create, "create an empty knowledge base")
    parser.add_argument("name")
    parser.add_argument("--description")
    parser.add_argument("--chunk-tokens", type=int, help="chunk size in MiniLM word pieces")
    parser.add_argument("--chunk-overlap-tokens", type=int)
    with_limit(command(knowledge, "list", knowledge_list, "list the organization's knowledge bases"))
    command(knowledge, "show", knowledge_show, "show a knowledge base and its documents").add_argument("id")
    parser = command(
        knowledge,
        "upload",
        knowledge_upload,
        "upload documents (Markdown, text, HTML, PDF); each is indexed by the next build",
    )
    parser.add_argument("id")
    parser.add_argument("files", nargs="+", type=existing_file, metavar="FILE")
    parser = command(knowledge, "search", knowledge_search, "the chunks most similar to a query")
    parser.add_argument("id")
    parser.add_argument("query")
    parser.add_argument("--top-k", type=int, default=5)
    parser = command(
        knowledge,
        "stale-rows",
        knowledge_stale_rows,
        "dataset rows that new document versions contradict (excluded until confirmed or corrected by an annotation)",
    )
    parser.add_argument("id")
    parser.add_argument("--state", choices=("stale", "confirmed", "corrected", "excluded", "removed"))
    parser.add_argument(
        "--accept-proposals",
        action="store_true",
        help="correct the stale rows that have a proposed correction with it (a new version of each dataset)",
    )
    parser.add_argument("--row", action="append", help="with --accept-proposals: only this row (repeatable)")
    parser.add_argument("--reason", help="with --accept-proposals: why, recorded with each new dataset version")

    models = group("models", "the model registry: versions, aliases and the promotion gate")
    with_limit(command(models, "list", models_list, "list registered models"))
    command(models, "show", models_show, "show a registered model and its aliases").add_argument("name")
    parser = with_limit(command(models, "versions", models_versions, "list a model's versions, or show one"))
    parser.add_argument("name")
    parser.add_argument("version", nargs="?", type=int)
    parser = command(models, "promote", models_promote, "ask the promotion gate to point an alias at a version")
    parser.add_argument("name")
    parser.add_argument("version", type=int)
    parser.add_argument("--alias", default="production")
    parser.add_argument("--force", action="store_true", help="skip the gate (owners and admins; needs --reason)")
    parser.add_argument("--reason")
    parser.add_argument("--wait", action="store_true", help="wait for the gate's decision (exit 1 unless PROMOTED)")
    parser = command(models, "rollback", models_rollback, "move an alias back to the version it pointed at before")
    parser.add_argument("name")
    parser.add_argument("alias")
    parser.add_argument("--reason")
    parser = command(models, "update", models_update, "rename or describe a registered model")
    parser.add_argument("name")
    parser.add_argument("--rename", metavar="NEW_NAME")
    parser.add_argument("--description")
    command(
        models, "delete", models_delete, "delete a model with its versions (refused while an alias points at one)"
    ).add_argument("name")

    parser = command(commands, "lineage", lineage_show, "what a node came from and what came of it")
    parser.add_argument(
        "kind",
        choices=[kind.value for kind in LineageKind],
    )
    parser.add_argument(
        "id", help="dataset versions: ID@N, iterations: TASK:N, model versions: NAME@N, aliases: NAME:ALIAS"
    )
    parser = command(
        commands, "erase", erase_row, "erase a dataset row wherever it went, and flag the models trained on it"
    )
    parser.add_argument("dataset", metavar="DATASET_ID")
    parser.add_argument("row", metavar="ROW_ID")
    parser.add_argument("--reason", required=True)
    parser = command(
        commands,
        "erase-document",
        erase_document,
        "erase a knowledge-base document wherever it went (index, generated rows, passages), and flag the models",
    )
    parser.add_argument("kb", metavar="KNOWLEDGE_BASE_ID")
    parser.add_argument("document", metavar="DOCUMENT_ID")
    parser.add_argument("--reason", required=True)
    parser = command(
        commands, "erase-user", erase_user, "erase everything one user sent in the organization (an admin's request)"
    )
    parser.add_argument("user", metavar="USER_ID")
    parser.add_argument("--reason", required=True)
    command(commands, "erasures", erasures_list, "list the organization's erasures")
    parser = command(
        commands,
        "retention",
        retention_show,
        "show how long the organization keeps its QA history and task events, and what was pruned; or set it",
    )
    parser.add_argument("--qa-days", type=retention_days, default=KEEP, help="days, or 'forever'")
    parser.add_argument("--events-days", type=retention_days, default=KEEP, help="days, or 'forever'")
    parser = command(
        commands,
        "judge",
        judge_show,
        "show the organization's judge for suites' `judge` assertions (an OpenAI-compatible endpoint); or set it",
    )
    parser.add_argument("--url", help="the endpoint's base URL, e.g. http://judge.internal:8001/v1")
    parser.add_argument("--model", help="the model name to ask for")
    parser.add_argument("--api-key-env", metavar="VAR", help="read the endpoint's API key from this variable")
    parser.add_argument("--clear", action="store_true", help="remove the judge")

    parser = with_limit(command(models, "gates", models_gates, "list a model's promotion gates, or show one"))
    parser.add_argument("name")
    parser.add_argument("gate_id", nargs="?")
    parser = command(models, "suites", models_suites, "the suites a promotion to an alias must pass (none: clear them)")
    parser.add_argument("name")
    parser.add_argument("alias")
    parser.add_argument("suites", nargs="*", metavar="SUITE")

    releases = group("releases", "release an alias to a candidate version in weighted, analysed steps")
    parser = command(releases, "start", releases_start, "start a release of an alias to a candidate version")
    parser.add_argument("name")
    parser.add_argument("version", type=int, help="the candidate version")
    parser.add_argument("--alias", default="production")
    parser.add_argument(
        "--steps", type=weights, metavar="W,W,...", help="the candidate's weight at each step: 10,50,100"
    )
    parser.add_argument("--bake-seconds", type=float, help="every step runs at least this long")
    parser.add_argument("--min-requests", type=int, help="per version with traffic, before a step is analysed")
    parser.add_argument("--max-wait-seconds", type=float, help="a step without enough requests then pauses")
    parser.add_argument("--watch", action="store_true", help="follow it until it ends (exit 0 when PROMOTED)")
    parser = with_limit(command(releases, "list", releases_list, "list a model's releases, or show one"))
    parser.add_argument("name")
    parser.add_argument("release_id", nargs="?")
    parser = command(
        releases, "watch", releases_watch, "follow a release's decisions until it ends (exit 0 when PROMOTED)"
    )
    parser.add_argument("name")
    parser.add_argument("release_id")
    for verb, help in (
        ("promote", "skip the remaining steps and move the alias now (owners and admins)"),
        ("pause", "pause a release: the alias serves its current version only"),
        ("resume", "resume a paused release (its step starts again)"),
        ("abort", "stop a release: candidate weight 0, the alias unchanged"),
    ):
        parser = command(releases, verb, release_action(verb), help)
        parser.add_argument("name")
        parser.add_argument("release_id")
        parser.add_argument("--reason")

    suites = group("suites", "scenario suites: cases a model version must pass, their runs and comparisons")
    parser = command(suites, "create", suites_create, "create a suite from a JSONL file of cases")
    parser.add_argument("name")
    parser.add_argument("file", type=existing_file)
    parser.add_argument("--blocking", action="store_true", help="a failing case refuses a promotion that requires it")
    parser.add_argument("--description")
    with_limit(command(suites, "list", suites_list, "list the organization's suites (their latest versions)"))
    parser = command(suites, "show", suites_show, "show a suite version and its cases")
    parser.add_argument("name")
    parser.add_argument("--version", type=int, help="default: the latest")
    parser = command(suites, "run", suites_run, "run a suite against a model version (name@N, name@alias)")
    parser.add_argument("name")
    parser.add_argument("model")
    parser.add_argument("--version", type=int, help="the suite's version (default: the latest)")
    parser.add_argument("--wait", action="store_true", help="wait for the run (exit 1 unless every case passed)")
    parser = with_limit(command(suites, "runs", suites_runs, "list a suite's runs, or show one case by case"))
    parser.add_argument("name")
    parser.add_argument("run_id", nargs="?")
    parser = command(suites, "compare", suites_compare, "compare two runs case by case (default: the last two)")
    parser.add_argument("name")
    parser.add_argument("--before", metavar="RUN_ID")
    parser.add_argument("--after", metavar="RUN_ID")
    parser = command(suites, "export", suites_export, "write a suite version's cases as JSONL")
    parser.add_argument("name")
    parser.add_argument("--version", type=int, help="default: the latest")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
