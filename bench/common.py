"""What every benchmark shares: where results go and how a run is described. The tiny model, free ports and how a
workflow's history turns into time inside activities, time waiting for a worker and the rest are in testkit."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    import torch

    info = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    for library in ("transformers", "peft"):
        with contextlib.suppress(ImportError):
            info[library] = __import__(library).__version__
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_result(name: str, result: dict[str, Any], path: Path | None = None) -> Path:
    """Write `result` with the date and the machine to `path` (default: bench/results/<name>.json) and print it."""
    path = path or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "benchmark": name,
                "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "machine": machine(),
                **result,
            },
            indent=2,
        )
    )
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return path
