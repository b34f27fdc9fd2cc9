"""Logs are JSON lines carrying the task's context and trace; `make dev` shows each as one readable line."""

from __future__ import annotations

import io
import json
import logging

import pytest
from opentelemetry.sdk.trace import TracerProvider

from observability.logs import configure_logging, log_context, readable


@pytest.fixture
def stream(monkeypatch):
    """The root logger configured as a process configures it, writing to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    buffer = io.StringIO()
    monkeypatch.setattr("sys.stderr", buffer)
    configure_logging("worker-train")
    yield buffer
    root.handlers[:], _ = saved
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def test_a_record_is_one_json_line_with_the_task_context_and_the_trace(stream):
    tracer = TracerProvider().get_tracer("test")
    with (
        tracer.start_as_current_span("RunActivity:train_adapter") as span,
        log_context(task_id="t-1", iteration=2, org_id="org-9", phase="train_adapter"),
    ):
        logging.getLogger("ml.trainer").info("step %d/%d loss %.4f", 10, 20, 1.25, extra={"step": 10, "loss": 1.25})
    logging.getLogger("workers").warning("outside any task")
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (
        inside["message"] == "step 10/20 loss 1.2500" and inside["level"] == "INFO" and inside["logger"] == "ml.trainer"
    )
    assert (inside["task_id"], inside["iteration"], inside["org_id"], inside["phase"]) == (
        "t-1",
        2,
        "org-9",
        "train_adapter",
    )
    assert (
        inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
        and inside["step"] == 10
        and inside["loss"] == 1.25
    )
    assert inside["service"] == "worker-train" and inside["time"].startswith("20")
    assert "task_id" not in outside and "trace_id" not in outside and outside["level"] == "WARNING"
    # the span says the same
    assert span.attributes["wlops.task_id"] == "t-1" and span.attributes["wlops.iteration"] == 2


def test_warnings_and_library_chatter_do_not_break_the_lines(stream):
    import warnings

    warnings.warn("a thing to know", UserWarning, stacklevel=1)
    logging.getLogger("httpx").info("HTTP Request: GET ...")  # below WARNING for noisy libraries
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["logger"] for line in lines] == ["py.warnings"]


def test_readable_turns_a_json_line_into_one_line_for_a_person():
    line = json.dumps(
        {
            "time": "2026-11-29T01:02:03.456Z",
            "level": "INFO",
            "logger": "ml.trainer",
            "message": "step 10/20 loss 1.2500",
            "service": "worker-train",
            "task_id": "t-1",
            "iteration": 2,
            "org_id": "o",
            "trace_id": "ab" * 16,
            "step": 10,
        }
    )
    assert readable(line) == "01:02:03 INFO    [task_id=t-1 iteration=2] step 10/20 loss 1.2500 step=10 (ml.trainer)"
    # not ours: as it came
    assert readable("time=2026 level=WARN msg=temporal says\n") == "time=2026 level=WARN msg=temporal says"


def test_make_dev_shows_each_new_complete_line_of_each_service_once(tmp_path):
    from cli.stack import Stack
    from core.settings import Settings

    stack = Stack(Settings(data_dir=tmp_path))
    stack.processes = {"api": None, "worker-train": None}  # the names of the services whose logs it follows
    stack.log_dir.mkdir(parents=True)
    (stack.log_dir / "api.log").write_text('{"message": "a"}\n{"mess')  # the second line is still being written
    assert stack.new_log_lines() == [("api", '{"message": "a"}')]
    with open(stack.log_dir / "api.log", "a") as fh:
        fh.write('age": "b"}\n')
    (stack.log_dir / "worker-train.log").write_text("plain line\n")
    assert stack.new_log_lines() == [("api", '{"message": "b"}'), ("worker-train", "plain line")]
    assert stack.new_log_lines() == []
