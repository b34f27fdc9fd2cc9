"""Follow a task's server-sent event stream (`GET /api/v1/tasks/{id}/events`): resumed with `Last-Event-ID` after a
dropped connection, shown as a progress bar of the running phase or as JSON lines. Used by `wlops tasks watch` and
`make demo`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, connect_sse
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.api_client import ApiClient, ApiError

RECONNECT_ATTEMPTS = 10  # consecutive failed connections before following gives up


def task_events(api: ApiClient, task_id: str) -> Iterator[ServerSentEvent]:
    """The task's server-sent events; a dropped connection is resumed with `Last-Event-ID`, so no event is missed or
    repeated."""
    last_id, failures = None, 0
    while True:
        try:
            headers: dict[str, str] = {"Last-Event-ID": last_id} if last_id else {}
            with connect_sse(
                api.http, "GET", f"/api/v1/tasks/{quote(task_id, safe='')}/events", headers=headers
            ) as source:
                api.check(source.response)
                for event in source.iter_sse():
                    failures, last_id = 0, event.id or last_id
                    if not event.data:  # the server's keep-alive comment, which httpx-sse hands over as an empty event
                        continue
                    yield event
                    if event.event == "final":
                        return
            reason = "the server closed the stream"
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
        failures += 1
        if failures > RECONNECT_ATTEMPTS:
            raise ApiError(f"lost the event stream of task {task_id} at {api.url}: {reason}")
        time.sleep(min(0.5 * failures, 5))


class EventLines:
    """`--json`: each event as one line, `{"id": .., "event": .., "data": {..}}`."""

    def __enter__(self) -> EventLines:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def show(self, event: ServerSentEvent, data: dict) -> None:
        print(
            json.dumps({"id": int(event.id) if event.id.isdigit() else None, "event": event.event, "data": data}),
            flush=True,
        )


class EventProgress:
    """A progress bar of the running phase (training steps, or questions evaluated); status changes and scores printed
    as they come."""

    def __init__(self, console: Console):
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.bar = self.progress.add_task("", total=None, detail="")
        self.task_id, self.iteration, self.max_iterations, self.status = "", 0, None, ""
        self.started = False

    def __enter__(self) -> EventProgress:
        return self

    def __exit__(self, *_: object) -> None:
        if self.started:
            self.progress.stop()

    def show(self, event: ServerSentEvent, data: dict) -> None:
        if not self.started:  # at the first event, so a refused request leaves no trace on stdout
            self.progress.start()
            self.started = True
        say = self.progress.console.print
        if event.event == "snapshot":
            task = data["task"]
            self.task_id, self.iteration, self.max_iterations, self.status = (
                task["task_id"],
                task["current_iteration"],
                task["max_iterations"],
                task["status"],
            )
            say(f"task {task['task_id']} ({task['task_name']}): {task['status']}")
            self.phase(task.get("progress") or {})
        elif event.event == "status":
            self.iteration, self.status = data.get("iteration") or self.iteration, data["status"]
            self.progress.reset(self.bar, total=None, detail="")
            say(f"iteration {self.iteration}: {data.get('previous_status')} → [bold]{data['status']}[/]")
        elif event.event == "progress":
            self.iteration = data.get("iteration") or self.iteration
            self.phase(data)
        elif event.event == "score":
            baseline, right, base_right = (
                data.get("baseline_score"),
                data.get("test_fact_accuracy"),
                data.get("baseline_fact_accuracy"),
            )
            facts = (
                f"test answers right [bold]{right:.3f}[/]"
                + (f" (base model {base_right:.3f}); " if base_right is not None else "; ")
                if right is not None
                else ""
            )
            say(
                f"iteration {data['iteration']}: {facts}blended test score {data['score']:.4f}"
                + (f" (base model {baseline:.4f})" if baseline is not None else "")
            )
        elif event.event == "final":
            self.status = data["status"]
            score = data.get("latest_score")
            say(
                f"[bold]{data['status']}[/]"
                + (f", score {score:.4f}" if score is not None else "")
                + (f" — the report: wlops tasks report {self.task_id}" if data.get("report_available") else "")
            )
        of = f"/{self.max_iterations}" if self.max_iterations else ""
        self.progress.update(self.bar, description=f"iteration {self.iteration}{of} {self.status}")

    def phase(self, progress: dict) -> None:
        """The bar: training steps (with loss and speed), or evaluated questions (with the split)."""
        if progress.get("total_steps"):
            loss, speed = progress.get("loss"), progress.get("tokens_per_second")
            detail = (f"loss {loss:.3f}" if loss is not None else "") + (f"  {speed:.0f} tok/s" if speed else "")
            self.progress.update(
                self.bar, total=progress["total_steps"], completed=progress.get("step") or 0, detail=detail
            )
        elif progress.get("total"):
            self.progress.update(
                self.bar,
                total=progress["total"],
                completed=progress.get("done") or 0,
                detail=progress.get("stage") or "",
            )
