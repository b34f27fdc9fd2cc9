"""The rows decoding together in the serving engine, and the KV cache they share: rows join it and leave it between
decode steps.

The cache is transformers' `DynamicCache`: per layer, keys and values of shape (rows, heads, columns, head_dim), every
row left-padded to the same number of columns; `attention` marks which columns of each row hold a real token. Each
row carries its own position ids, so its padding never shifts its positions and a row's answer does not depend on
which other rows share its batch.

- **Joining** (`merge`): a batch prefilled from newly arrived prompts is concatenated to the running one along the rows,
  the one with fewer columns padded on the left.
- **Leaving** (`keep`): finished rows' cache rows are dropped, and so are the leading columns that no remaining row
  uses, so a batch is padded only to its longest *remaining* row, not to the longest prompt it ever held.

Plain torch over the cache's tensors: no model, so it is unit-tested on its own (`tests/unit/test_running_batch.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class RunningBatch:
    rows: list[Any]  # each row's own decoding state (the engine's `_Row`), in the cache's row order
    names: list[str]  # the adapter of each row (`__base__`: the base model)
    cache: Any  # a transformers DynamicCache holding every token each row has consumed
    attention: torch.Tensor  # (rows, columns) long: 1 where a row's column holds a token, 0 for its left padding
    positions: torch.Tensor  # (rows,) long: the position of each row's last cached token
    tokens: torch.Tensor  # (rows,) long: each row's next input, its last sampled token, not yet in the cache

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def columns(self) -> int:
        return int(self.attention.shape[1])

    def next_inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next decode step's input ids (rows, 1), attention mask (rows, columns + 1) and position ids (rows, 1);
        the attention mask and the positions then stand for the cache as the step leaves it."""
        self.attention = torch.cat([self.attention, torch.ones((len(self), 1), dtype=torch.long)], dim=1)
        self.positions = self.positions + 1
        return self.tokens[:, None], self.attention, self.positions[:, None]

    def keep(self, slots: list[int]) -> None:
        """Keep only the rows at `slots` (in that order), and drop the leading columns none of them uses."""
        if len(slots) == len(self) and slots == list(range(len(self))):
            return
        index = torch.tensor(slots, dtype=torch.long)
        attention = self.attention[index]
        used = torch.nonzero(attention.any(dim=0))
        first = int(used[0]) if len(used) else attention.shape[1]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index.to(layer.keys.device), :, first:]
            layer.values = layer.values[index.to(layer.values.device), :, first:]
        self.attention = attention[:, first:]
        self.positions, self.tokens = self.positions[index], self.tokens[index]
        self.rows = [self.rows[s] for s in slots]
        self.names = [self.names[s] for s in slots]

    def merge(self, other: RunningBatch) -> None:
        """Take `other`'s rows in after this batch's, padding the one with fewer columns on the left."""
        width = max(self.columns, other.columns)
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([_pad_left(mine.keys, width), _pad_left(theirs.keys, width)], dim=0)
            mine.values = torch.cat([_pad_left(mine.values, width), _pad_left(theirs.values, width)], dim=0)
        self.attention = torch.cat([_pad_left(self.attention, width), _pad_left(other.attention, width)], dim=0)
        self.positions = torch.cat([self.positions, other.positions])
        self.tokens = torch.cat([self.tokens, other.tokens])
        self.rows += other.rows
        self.names += other.names


def can_merge(cache: Any) -> bool:
    """Whether rows can join a batch using `cache`: every layer a plain growing one (a sliding-window layer keeps only
    its window, whose columns do not line up between rows of different lengths)."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _pad_left(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """`tensor` with zeros added before its columns (dim -2 for a cache's (rows, heads, columns, dim), -1 for a
    mask's (rows, columns)) up to `width` columns."""
    dim = -1 if tensor.dim() == 2 else -2
    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)
