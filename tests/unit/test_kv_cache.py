"""KV caches that grow in place: only a buffer's tip appends in place; every older view keeps its rows."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.model.runtime.kv_cache import KVCache


def rows(value: float, count: int, heads: int = 1) -> dict[str, np.ndarray]:
    return {"past_key_values.0.key": np.full((1, heads, count, 4), value, np.float32)}


def test_the_tip_grows_in_place_and_older_views_keep_their_rows() -> None:
    empty = KVCache(rows(0, 0), 0)
    first = empty.appended(rows(1, 3))
    second = first.appended(rows(2, 2))
    name = "past_key_values.0.key"
    assert second.tensors[name].base is first.tensors[name].base  # written in place, no copy of the three
    branch = first.appended(rows(3, 2))  # `first` is no longer the tip: a copy, never over `second`'s rows
    assert branch.tensors[name].base is not second.tensors[name].base
    np.testing.assert_array_equal(second.tensors[name][0, 0, :, 0], [1, 1, 1, 2, 2])
    np.testing.assert_array_equal(branch.tensors[name][0, 0, :, 0], [1, 1, 1, 3, 3])
    np.testing.assert_array_equal(first.tensors[name][0, 0, :, 0], [1, 1, 1])
    assert second.length == branch.length == 5 and second.tensors[name].flags.c_contiguous


def test_a_full_buffer_moves_to_a_bigger_one() -> None:
    cache = KVCache(rows(0, 0), 0)
    for step in range(1000):
        cache = cache.appended(rows(step, 1))
    np.testing.assert_array_equal(cache.tensors["past_key_values.0.key"][0, 0, :, 0], np.arange(1000))


@pytest.mark.parametrize("heads", [2, 3])
def test_several_kv_heads_are_joined_by_copy(heads: int) -> None:
    """A [1, H, T, D] past with H > 1 cannot grow in place and stay contiguous: it is copied, correctly."""
    cache = KVCache(rows(1, 2, heads), 2).appended(rows(2, 1, heads))
    tensor = cache.tensors["past_key_values.0.key"]
    assert tensor.shape == (1, heads, 3, 4) and tensor.flags.c_contiguous
    np.testing.assert_array_equal(tensor[0, heads - 1, :, 0], [1, 1, 2])


def test_trimming_a_sliding_layer_leaves_the_others_growing_in_place() -> None:
    full, sliding = "past_key_values.0.key", "past_key_values.1.key"
    empty = {name: np.zeros((1, 1, 0, 4), np.float32) for name in (full, sliding)}
    cache = KVCache(empty, 0, windows={sliding: 8})
    buffers = set()
    for step in range(200):
        cache = cache.appended({name: np.full((1, 1, 1, 4), step, np.float32) for name in (full, sliding)})
        cache = cache.trimmed()
        buffers.add(id(cache.tensors[full].base))
    assert len(buffers) == 1  # the full layer kept growing in its first buffer through ~30 trims
    np.testing.assert_array_equal(cache.tensors[full][0, 0, :, 0], np.arange(200))
    held = cache.tensors[sliding][0, 0, :, 0]
    np.testing.assert_array_equal(held, np.arange(200 - held.size, 200))
    assert held.size <= 8 + 64 + 4
