"""The running batch's cache bookkeeping on plain tensors: rows join padded on the left, leave with their cache rows,
and the columns no remaining row uses are dropped."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from serving.running_batch import RunningBatch, can_merge


def batch(lengths: list[int], first_value: float, layers: int = 2) -> RunningBatch:
    """Rows of the given prompt lengths, left-padded; each real cache entry holds `first_value + row`."""
    width = max(lengths)
    attention = torch.zeros((len(lengths), width), dtype=torch.long)
    keys = torch.zeros((len(lengths), 1, width, 2))
    for row, n in enumerate(lengths):
        attention[row, width - n :] = 1
        keys[row, :, width - n :] = first_value + row
    cache = DynamicCache()
    for layer in range(layers):
        cache.update(keys.clone(), -keys.clone(), layer)
    names = [f"r{first_value + row:g}" for row in range(len(lengths))]
    return RunningBatch(
        rows=list(names),
        names=names,
        cache=cache,
        attention=attention,
        positions=torch.tensor(lengths) - 1,
        tokens=torch.arange(len(lengths)),
    )


def test_rows_join_padded_on_the_left_and_keep_their_positions():
    running, joining = batch([3, 2], 10), batch([5], 20)
    running.merge(joining)
    assert running.names == ["r10", "r11", "r20"] and running.columns == 5
    assert running.attention.tolist() == [[0, 0, 1, 1, 1], [0, 0, 0, 1, 1], [1, 1, 1, 1, 1]]
    assert running.positions.tolist() == [2, 1, 4] and running.tokens.tolist() == [0, 1, 0]
    for layer in running.cache.layers:
        assert layer.keys.shape == (3, 1, 5, 2) and layer.values.shape == (3, 1, 5, 2)
        # each row's entries sit in its attended columns; padding is zero
        assert torch.equal((layer.keys[:, 0, :, 0] != 0).long(), running.attention)
        assert layer.keys[2, 0, 0, 0] == 20 and layer.values[0, 0, 4, 0] == -10
    assert running.cache.get_seq_length() == 5


def test_a_shorter_batch_joining_is_padded_too():
    running = batch([4], 10)
    running.merge(batch([1, 2], 20))
    assert running.attention.tolist() == [[1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 1, 1]]


def test_leaving_rows_take_their_cache_rows_and_unused_columns_with_them():
    running = batch([2, 6, 3], 10)
    running.keep([2, 0])  # the longest row leaves
    assert running.names == ["r12", "r10"] and running.columns == 3
    assert running.attention.tolist() == [[1, 1, 1], [0, 1, 1]]
    assert running.positions.tolist() == [2, 1]
    for layer in running.cache.layers:
        assert layer.keys[:, 0, :, 0].tolist() == [[12, 12, 12], [0, 10, 10]]
    assert running.cache.get_seq_length() == 3


def test_the_next_inputs_extend_the_mask_and_the_positions():
    running = batch([2, 3], 10)
    ids, attention, positions = running.next_inputs()
    assert ids.tolist() == [[0], [1]] and positions.tolist() == [[2], [3]]
    assert attention.tolist() == [[0, 1, 1, 1], [1, 1, 1, 1]] and running.columns == 4


def test_only_a_cache_of_plain_growing_layers_can_take_rows_mid_decode():
    from transformers.cache_utils import DynamicSlidingWindowLayer

    running = batch([2], 10)
    assert can_merge(running.cache)
    running.cache.layers[1] = DynamicSlidingWindowLayer(sliding_window=4)
    assert not can_merge(running.cache)
