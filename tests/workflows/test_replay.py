"""Replay recorded histories against the current workflow code: a non-deterministic change fails here.

Re-record after an intentional, versioned change with:
    WLOPS_RECORD_HISTORIES=1 pytest tests/workflows -k "standard_run or max_iterations"
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows import FineTuningWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded_for_standard_and_continuous_runs():
    names = {p.name for p in HISTORIES}
    assert "standard-run1.json" in names
    assert {"continuous-run1.json", "continuous-run2.json", "continuous-run3.json"} <= names


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_recorded_history_replays_deterministically(path: Path):
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = await Replayer(workflows=[FineTuningWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
