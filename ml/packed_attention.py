"""Attention for packed training rows: one causal attention per example instead of one masked square.

Registered with transformers' attention interface under `PACKED_ATTENTION`. When the forward
call carries `cu_seq_lens_q` (where each packed example starts), each example attends only to
itself with `is_causal=True`, so SDPA picks its fastest kernel and the cost is the sum of the
examples' squared lengths. Without it (generation, evaluation) it is exactly transformers' SDPA
attention with SDPA's masks, so a model can keep this implementation for everything.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

PACKED_ATTENTION = "wlops_packed_sdpa"


def packed_attention_forward(
    module,
    query,
    key,
    value,
    attention_mask,
    dropout: float = 0.0,
    scaling: float | None = None,
    cu_seq_lens_q: torch.Tensor | None = None,
    **kwargs,
):
    if cu_seq_lens_q is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    lengths = torch.diff(cu_seq_lens_q).tolist()
    # split, not slicing: the backward of a split is one concatenation, while each slice's backward
    # would fill a zero tensor the size of the whole row
    outputs = [
        torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True)
        for q, k, v in zip(
            query.split(lengths, dim=2), key.split(lengths, dim=2), value.split(lengths, dim=2), strict=True
        )
    ]
    # transformers expects (batch, sequence, heads, head_dim)
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


AttentionInterface.register(PACKED_ATTENTION, packed_attention_forward)
AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)
