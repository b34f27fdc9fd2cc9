"""The precision a model computes in: bf16 autocast where the device multiplies bf16 natively, fp32 elsewhere.

Under `torch.autocast` the weights stay fp32 (training updates fp32 master weights) and the matrix products run in
bf16. On a CUDA GPU with bf16 that is the usual choice. On a CPU it pays only where the cores have bf16 instructions
(AVX512-BF16, or AMX); a CPU without them would emulate bf16 and run slower, so `auto` leaves it in fp32.

Two settings, each a worker's, like its device (`core.settings`):
- `WLOPS_TRAINING_PRECISION` (`auto`): training, and the evaluation's loss on the training split (a ranking of the
  training rows; bf16 moved each loss by 0.4%, median). Measured on the 2-core development machine (AVX512-BF16, no
  AMX; `bench/results/precision.json`): training 1.35x the tokens/s, the loss 1.69x as fast; and the adapters
  answered as the fp32 ones did (`bench/results/training_levers_bf16_train.json`: 3 seeds, 1 question gained and 1
  lost on the feedback split, 0 and 1 on the test split).
- `WLOPS_INFERENCE_PRECISION` (`fp32`): every answer, in evaluations, the gate, suites and serving, so that a version
  is served as it was evaluated. Answering in bf16 was 1.69x as fast but reworded about a third of the untuned
  model's answers, and over 5 seeds of trained adapters it was level on the feedback split (4 gained, 5 lost) and
  behind on the test split (3 gained, 8 lost; `bench/results/training_levers_bf16*.json`): not yet the default.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Literal

Precision = Literal["auto", "bf16", "fp32"]
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache  # a CPU's flags do not change: read once per process, not on every training or decode step
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX-BF16); False where it cannot be told."""
    try:
        flags = next((line for line in cpuinfo.read_text().splitlines() if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in NATIVE_BF16_FLAGS)


def uses_bf16(device_type: str, precision: Precision) -> bool:
    """Whether a model on `device_type` ("cpu", "cuda", ...) computes in bf16 under the `precision` setting."""
    if precision == "fp32":
        return False
    if precision == "bf16":
        return True
    if device_type == "cuda":
        import torch

        return bool(torch.cuda.is_bf16_supported())
    return device_type == "cpu" and cpu_has_native_bf16()


def autocast(device_type: str, precision: Precision) -> contextlib.AbstractContextManager:
    """The context a model's forward passes run in (thread-local, like every autocast)."""
    import torch

    if not uses_bf16(device_type, precision):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


def model_autocast(model, precision: Precision) -> contextlib.AbstractContextManager:
    """`autocast` on the device `model`'s weights are on."""
    return autocast(next(model.parameters()).device.type, precision)
