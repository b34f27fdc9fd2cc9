"""Every row of a batch on its own LoRA adapter, in one batched matmul per projection (Punica's BGMV, in plain torch).

peft's mixed-adapter batches (`adapter_names`) group the rows by adapter and run each group's low-rank matmuls
separately, in every adapted projection: 8 adapters cost 8 small matmul pairs per projection per decoding step.
Here each adapted projection keeps the loaded adapters' A and B stacked (slot 0 is zeros: the base model; ranks
are zero-padded to the largest, and B carries the adapter's scaling), gathers each row's pair and computes
`x @ A_row^T @ B_row^T` for the whole batch in two `bmm`s, whatever the adapters. Dropout is off (inference only).
"""

from __future__ import annotations

import types
from typing import Any

import torch


class BatchedLoRA:
    """Installs the batched forward on every LoRA layer of a peft model; `rows` says which slot each row uses."""

    def __init__(self, model: Any) -> None:
        from peft.tuners.lora import LoraLayer

        # Any: each layer gets attributes of ours (its stacks, its forward), which LoraLayer does not declare
        self.layers: list[Any] = [m for m in model.modules() if isinstance(m, LoraLayer) and hasattr(m, "base_layer")]
        self.slots: dict[str, int] = {}
        self.rows: torch.Tensor | None = None
        for layer in self.layers:
            layer.forward = types.MethodType(_batched_forward(self), layer)

    def rebuild(self, names: list[str]) -> None:
        """Stack the A and B of the adapters `names` (slots 1..n; 0 is the base model), after a load or an eviction."""
        for layer in self.layers:
            base = layer.base_layer
            rank = max((layer.lora_A[n].weight.shape[0] for n in names if n in layer.lora_A), default=1)
            a_stack = torch.zeros(
                len(names) + 1, rank, base.in_features, dtype=base.weight.dtype, device=base.weight.device
            )
            b_stack = torch.zeros(
                len(names) + 1, base.out_features, rank, dtype=base.weight.dtype, device=base.weight.device
            )
            for slot, name in enumerate(names, start=1):
                if name in layer.lora_A:
                    a, b = layer.lora_A[name].weight, layer.lora_B[name].weight * layer.scaling[name]
                    a_stack[slot, : a.shape[0]] = a
                    b_stack[slot, :, : b.shape[1]] = b
            layer.wlops_a, layer.wlops_b = a_stack, b_stack
        self.slots = {name: slot for slot, name in enumerate(names, start=1)}

    def remove(self) -> None:
        """Give the layers back their own (peft's) forward."""
        for layer in self.layers:
            layer.__dict__.pop("forward", None)
            for name in ("wlops_a", "wlops_b"):
                layer.__dict__.pop(name, None)

    def select(self, names: list[str], device: torch.device | str) -> None:
        """The slot of each row of the next forward passes (`__base__` or an unknown name: the base model)."""
        self.rows = torch.tensor([self.slots.get(n, 0) for n in names], device=device)


def _batched_forward(state: BatchedLoRA):
    def forward(layer, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        result = layer.base_layer(x, *args, **kwargs)
        if state.rows is None or not hasattr(layer, "wlops_a"):
            return result
        a, b = layer.wlops_a[state.rows], layer.wlops_b[state.rows]  # (rows, r, in), (rows, out, r)
        return result + torch.bmm(torch.bmm(x.to(a.dtype), a.transpose(1, 2)), b.transpose(1, 2)).to(result.dtype)

    return forward
