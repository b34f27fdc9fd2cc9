"""Replay recorded histories against the current workflow code: a change that would break a workflow already
running on a deployed server fails here.

Histories are kept byte for byte, never re-recorded: a change to workflow code that changes its commands goes
behind `workflow.patched(...)` (or into a new workflow type), so every kept history still replays. A new shape
of run (a new command, signal or update) gets a new history beside the old ones:

    WLOPS_RECORD_HISTORIES=1 pytest tests/workflows -k <the test that runs that shape>

records every run of the test's workflow as `<name>-run<N>.json` and refuses to overwrite an existing file;
then add the file names to `KEPT` below.

`continuous-run1` is a 3-iteration continuous task in one run (the default `iterations_per_run`);
`continuous-boundary-run1..2` is the same task with `iterations_per_run=2`: two iterations, continue-as-new, one more;
`pause-updates-run1` pauses and resumes a standard task through the `request_pause`/`request_resume` updates (the run
also had one update of each refused by its validator: refused updates leave no event); `cancel-update-run1` cancels a
continuous task after a `request_cancel` update; `knowledge-ingestion-run1` is a knowledge base's ingestion: a
signal-with-start, one build, idle until the run ends; `dataset-generation-run1` is a dataset generated from a knowledge
base; `knowledge-ingestion-notify-run1` is an ingestion whose builds notify the tasks that follow the knowledge base
(behind the `notify-retrain-followers` patch), `retrain-run1` the RetrainWorkflow those notifications started,
`retrain-settles-once-run1` the same after its task had ended, with one quiet period instead of two;
`standard-registered-run1` is a standard task that registers its final adapter in the model registry (behind the
`register-final-adapter` patch), `promotion-gate-refused/promoted/failed-run1` the promotion gate's three endings;
`continuous-feedback-threshold-run1` a continuous task stopped by its threshold on the feedback split's share of right
answers (behind the `stop-on-feedback-accuracy` patch); `continuous-keeps-best-feedback-run1` a continuous task that
keeps its best iteration on the feedback split, not its last (behind the `keep-best-feedback-iteration` patch);
`suite-run-completed-run1` a scenario suite's run that answers
and judges every case, `suite-run-failed-run1` one that cannot answer and is marked FAILED;
`promotion-gate-suite-refused/promoted-run1` gates that also run the suites the alias requires against the candidate
(only inputs naming suite runs issue those activities, so the older gates replay unchanged);
`knowledge-ingestion-stale-run1` an ingestion whose second build indexed a new version of a document and marked the
dataset rows its text contradicts stale before notifying the followers (behind the `mark-stale-rows` patch),
`knowledge-ingestion-regenerate-run1` the same, with the rows of generated datasets written from changed chunks
generated again in between (behind the `regenerate-generated-rows` patch);
`release-promoted-run1` a release going 10% -> 50% -> 100% under real traffic and moving the alias,
`release-rolled-back-run1` one rolled back at its first step, `release-controls-run1` one paused for too little
traffic, resumed, paused and promoted by hand through its updates.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workers.pools import WORKFLOWS

HISTORY_DIR = Path(__file__).parent / "histories"
HISTORIES = sorted(HISTORY_DIR.glob("*.json"))
KEPT = {
    # recorded before the shared lifecycle, the updates and the renames (2026-11): they must replay forever
    "standard-run1.json",
    "continuous-run1.json",
    "continuous-boundary-run1.json",
    "continuous-boundary-run2.json",
    # the control updates
    "pause-updates-run1.json",
    "cancel-update-run1.json",
    # knowledge-base ingestion: one upload, one build, then idle until the run ends
    "knowledge-ingestion-run1.json",
    # a dataset generated from a knowledge base
    "dataset-generation-run1.json",
    # incremental re-training: three builds that each notify the followers, then cancelled; the retraining of a task
    # signalled twice, one incremental task started
    "knowledge-ingestion-notify-run1.json",
    "retrain-run1.json",
    # the same retraining after the `retrain-settles-again-only-after-waiting-for-the-task` patch: its task had ended,
    # so it starts the incremental task after one quiet period, not two
    "retrain-settles-once-run1.json",
    # the model registry: a standard task that registers its final adapter (behind the `register-final-adapter` patch);
    # the promotion gate refusing, promoting, and failing when its evaluation cannot run
    "standard-registered-run1.json",
    "promotion-gate-refused-run1.json",
    "promotion-gate-promoted-run1.json",
    "promotion-gate-failed-run1.json",
    # the loop's threshold read on the feedback split's fact accuracy (behind the `stop-on-feedback-accuracy` patch)
    "continuous-feedback-threshold-run1.json",
    # a 3-iteration task that keeps (reports as final and registers) its best iteration on the feedback split, the
    # second (behind the `keep-best-feedback-iteration` patch)
    "continuous-keeps-best-feedback-run1.json",
    # a scenario suite's run: every case answered and judged; a run that cannot answer, marked FAILED
    "suite-run-completed-run1.json",
    "suite-run-failed-run1.json",
    # gates that run the suites the alias requires: refused by a blocking suite's failing case, promoted when they pass
    "promotion-gate-suite-refused-run1.json",
    "promotion-gate-suite-promoted-run1.json",
    # a document's second version: the build marks the rows it contradicts stale before telling the followers
    # (behind the `mark-stale-rows` patch)
    "knowledge-ingestion-stale-run1.json",
    # ... and generates again the rows of generated datasets written from the chunks it changed (behind the
    # `regenerate-generated-rows` patch)
    "knowledge-ingestion-regenerate-run1.json",
    # releases: promoted after every step, rolled back at its first, paused/resumed/promoted through its updates
    "release-promoted-run1.json",
    "release-rolled-back-run1.json",
    "release-controls-run1.json",
}


def events(name: str) -> list[dict]:
    return json.loads((HISTORY_DIR / name).read_text())["events"]


def scheduled_in(run: list[dict], activity_type: str) -> int:
    return sum(
        1
        for e in run
        if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name") == activity_type
    )


def activity_inputs(run: list[dict], activity_type: str) -> list[dict]:
    """The first argument of every scheduled `activity_type` activity, decoded."""
    return [
        json.loads(base64.b64decode(attributes["input"]["payloads"][0]["data"]))
        for e in run
        if (attributes := e.get("activityTaskScheduledEventAttributes", {}))
        and attributes["activityType"]["name"] == activity_type
    ]


def timers_in(run: list[dict]) -> int:
    return sum(1 for e in run if "timerStartedEventAttributes" in e)


def iterations_in(run: list[dict]) -> int:
    return scheduled_in(run, "optimize_dataset")


def continued_as_new(run: list[dict]) -> bool:
    return "workflowExecutionContinuedAsNewEventAttributes" in run[-1]


def updates_in(run: list[dict]) -> list[tuple[str, str]]:
    """(update name, accepted | rejected) for every update the run's history records."""
    out = []
    for event in run:
        if "workflowExecutionUpdateAcceptedEventAttributes" in event:
            out.append(
                (
                    event["workflowExecutionUpdateAcceptedEventAttributes"]["acceptedRequest"]["input"]["name"],
                    "accepted",
                )
            )
    return out


def test_every_kept_history_is_present():
    missing = KEPT - {p.name for p in HISTORIES}
    assert not missing, f"kept histories are missing: {sorted(missing)} (they are never deleted or re-recorded)"


def test_histories_cover_standard_continuous_and_control_runs():
    # several iterations inside one run, then the report: the loop itself is replayed
    assert iterations_in(events("continuous-run1.json")) == 3 and not continued_as_new(events("continuous-run1.json"))
    # and a continue-as-new boundary: the run that hands over and the run that picks up
    assert iterations_in(events("continuous-boundary-run1.json")) == 2 and continued_as_new(
        events("continuous-boundary-run1.json")
    )
    assert iterations_in(events("continuous-boundary-run2.json")) == 1 and not continued_as_new(
        events("continuous-boundary-run2.json")
    )
    assert updates_in(events("pause-updates-run1.json")) == [
        ("request_pause", "accepted"),
        ("request_resume", "accepted"),
    ]
    assert updates_in(events("cancel-update-run1.json")) == [("request_cancel", "accepted")]
    assert "workflowExecutionCanceledEventAttributes" in events("cancel-update-run1.json")[-1]
    # every build notifies the knowledge base's followers; a retraining gathers two changes and starts one task
    assert scheduled_in(events("knowledge-ingestion-notify-run1.json"), "notify_followers") == 3
    retrain = events("retrain-run1.json")
    # both changes (signal-with-start records its signal too)
    assert sum(1 for e in retrain if "workflowExecutionSignaledEventAttributes" in e) == 2
    assert scheduled_in(retrain, "start_incremental_task") == 1
    settled_once = events("retrain-settles-once-run1.json")
    assert scheduled_in(settled_once, "start_incremental_task") == 1
    assert timers_in(settled_once) < timers_in(retrain)
    # a finished task registers its final adapter once; the gate evaluates, then decides, unless the evaluation failed
    assert scheduled_in(events("standard-registered-run1.json"), "register_final_adapter") == 1
    assert scheduled_in(events("standard-run1.json"), "register_final_adapter") == 0
    for ending in ("refused", "promoted"):
        gate = events(f"promotion-gate-{ending}-run1.json")
        assert scheduled_in(gate, "evaluate_for_promotion") == 1 and scheduled_in(gate, "conclude_promotion") == 1
    kept = events("continuous-keeps-best-feedback-run1.json")
    assert [i["iteration"] for i in activity_inputs(kept, "register_final_adapter")] == [2]
    assert [i["final_iteration"] for i in activity_inputs(kept, "build_report")] == [2]
    assert all("final_iteration" not in i for i in activity_inputs(events("continuous-run1.json"), "build_report"))
    failed = events("promotion-gate-failed-run1.json")
    assert scheduled_in(failed, "conclude_promotion") == 0 and "workflowExecutionFailedEventAttributes" in failed[-1]


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays_deterministically(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await Replayer(workflows=WORKFLOWS).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
