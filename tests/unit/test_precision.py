"""ml.precision: bf16 autocast where the device multiplies bf16 natively, fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ml.examples import Example
from ml.precision import autocast, cpu_has_native_bf16, model_autocast, uses_bf16

CPUINFO = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 avx512f {extra}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize(
    ("extra", "native"), [("avx512_bf16 avx512_vnni", True), ("amx_bf16 amx_tile", True), ("avx512bw", False)]
)
def test_native_bf16_is_read_from_the_cpu_flags(tmp_path, extra, native):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO.format(extra=extra))
    assert cpu_has_native_bf16(cpuinfo) is native


def test_a_cpu_whose_flags_cannot_be_read_stays_in_fp32(tmp_path):
    assert cpu_has_native_bf16(tmp_path / "missing") is False
    assert uses_bf16("mps", "auto") is False


def test_the_setting_decides_and_auto_follows_the_hardware():
    assert uses_bf16("cpu", "fp32") is False and uses_bf16("cuda", "fp32") is False
    assert uses_bf16("cpu", "bf16") is True
    assert uses_bf16("cpu", "auto") is cpu_has_native_bf16()


def test_under_bf16_a_models_products_are_bf16_and_its_weights_stay_fp32():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with autocast("cpu", "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert layer(x).dtype == torch.float32
    with model_autocast(layer, "bf16"):
        assert layer(x).dtype == torch.bfloat16
    assert layer.weight.dtype == torch.float32


def test_a_loss_in_bf16_is_the_fp32_loss_within_bf16s_precision(tiny_model_dir):
    """The evaluation's per-example loss under bf16 autocast: the same figures to about 2 significant digits."""
    from ml.evaluator import per_example_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [Example(f"Which port does service {i} use?", f"Port {7400 + i}.") for i in range(6)]
    fp32 = per_example_loss(model, tokenizer, examples, max_length=64)
    with autocast("cpu", "bf16"):
        bf16 = per_example_loss(model, tokenizer, examples, max_length=64)
    assert bf16 == pytest.approx(fp32, rel=2e-2)
    assert bf16 != fp32  # it did compute in bf16
