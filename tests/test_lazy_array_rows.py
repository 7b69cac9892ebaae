"""An array source's rows are a lazy sequence: the same items, in the same seeded order, as a
list of `SourceItem`s sorted by `rng.sort_key` would be, without holding one object per row."""

from __future__ import annotations

import numpy as np
import pytest

from augexport.engine import order_items
from augexport.rng import sort_key
from augexport.sources import RawPixels, SourceItem
from augexport.sources.array_items import ArrayItems


def _rows(n: int) -> tuple[ArrayItems, list[SourceItem]]:
    labels = (np.arange(n) * 7 % 5).astype(np.int64)
    pixels = RawPixels((4, 3, 1), "|u1")
    lazy = ArrayItems(labels, "/data/x.npy", 128, 12, pixels)
    eager = [SourceItem(source_id=str(i), label=int(labels[i]), path="/data/x.npy", offset=128 + 12 * i, length=12,
                        pixels=pixels) for i in range(n)]
    return lazy, eager


@pytest.mark.parametrize("seed", [0, 1, 2**40 + 3])
def test_the_seeded_order_is_the_sort_key_order(seed: int) -> None:
    lazy, eager = _rows(1500)
    ordered = order_items(lazy, seed, shuffle=True)
    assert isinstance(ordered, ArrayItems)
    assert list(ordered) == sorted(eager, key=lambda it: sort_key(seed, it.source_id))
    assert order_items(lazy, seed, shuffle=True) is ordered  # computed once per seed


def test_rows_index_slice_and_iterate_like_a_list() -> None:
    lazy, eager = _rows(130)
    assert len(lazy) == 130 and list(lazy) == eager
    assert lazy[0] == eager[0] and lazy[-1] == eager[-1] and lazy[64:128] == eager[64:128]
    assert lazy[120:500] == eager[120:] and lazy[::-7] == eager[::-7]
    with pytest.raises(IndexError):
        lazy[130]
    assert order_items(lazy, 0, shuffle=False) is lazy
    assert lazy[3].pixels is lazy[4].pixels  # one RawPixels for every row: a task pickles it once
