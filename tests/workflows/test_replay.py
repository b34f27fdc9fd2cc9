"""Replay recorded histories against the current workflow code: a non-deterministic change fails here.

Re-record after an intentional, versioned change with:
    WLOPS_RECORD_HISTORIES=1 pytest tests/workflows -k "standard_run or max_iterations"

`continuous-run1` is a 3-iteration continuous task in one run (the default `iterations_per_run`);
`continuous-boundary-run1..2` is the same task with `iterations_per_run=2`: two iterations, continue-as-new, one more.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows import FineTuningWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def events(name: str) -> list[dict]:
    return json.loads((Path(__file__).parent / "histories" / name).read_text())["events"]


def iterations_in(run: list[dict]) -> int:
    return sum(1 for e in run if e.get("activityTaskScheduledEventAttributes", {}).get("activityType", {}).get("name") == "optimize_dataset")


def continued_as_new(run: list[dict]) -> bool:
    return "workflowExecutionContinuedAsNewEventAttributes" in run[-1]


def test_histories_are_recorded_for_standard_and_continuous_runs():
    names = {p.name for p in HISTORIES}
    assert names == {"standard-run1.json", "continuous-run1.json", "continuous-boundary-run1.json", "continuous-boundary-run2.json"}
    # several iterations inside one run, then the report: the loop itself is replayed
    assert iterations_in(events("continuous-run1.json")) == 3 and not continued_as_new(events("continuous-run1.json"))
    # and a continue-as-new boundary: the run that hands over and the run that picks up
    assert iterations_in(events("continuous-boundary-run1.json")) == 2 and continued_as_new(events("continuous-boundary-run1.json"))
    assert iterations_in(events("continuous-boundary-run2.json")) == 1 and not continued_as_new(events("continuous-boundary-run2.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays_deterministically(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await Replayer(workflows=[FineTuningWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
