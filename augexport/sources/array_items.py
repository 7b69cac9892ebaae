"""The items of an array source as a lazy sequence: row i is `SourceItem(str(i), labels[i], byte
range i)`, made when asked for. A listing of N rows then holds N labels and, once ordered, N row
indices (16 bytes a row) instead of N `SourceItem`s and their sort keys (~0.28 KiB a row at peak),
so the main process stays flat from 10,000 to 100,000 rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np

from . import RawPixels, SourceItem


class ArrayItems(Sequence[SourceItem]):
    """Rows of one C-ordered array at `path` from byte `offset`, `row` bytes each, in `order`
    (source order when None)."""

    def __init__(self, labels: np.ndarray, path: str, offset: int, row: int, pixels: RawPixels,
                 order: np.ndarray | None = None) -> None:
        self.labels, self.path, self.offset, self.row, self.pixels = labels, path, offset, row, pixels
        self.order = order
        self._ordered: dict[int, ArrayItems] = {}

    def __len__(self) -> int:
        return len(self.labels) if self.order is None else len(self.order)

    def _item(self, k: int) -> SourceItem:
        i = int(self.order[k]) if self.order is not None else k
        return SourceItem(source_id=str(i), label=int(self.labels[i]), path=self.path,
                          offset=self.offset + i * self.row, length=self.row, pixels=self.pixels)

    @overload
    def __getitem__(self, index: int) -> SourceItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[SourceItem]: ...

    def __getitem__(self, index: int | slice) -> SourceItem | list[SourceItem]:
        if isinstance(index, slice):
            return [self._item(k) for k in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._item(index)

    def __iter__(self) -> Iterator[SourceItem]:
        return (self._item(k) for k in range(len(self)))

    def ordered(self, seed: int) -> ArrayItems:
        """The rows in the seeded order: by sha256(seed, source_id), as `rng.sort_key` orders every
        other source (the same bytes compared, so the same order), computed once per seed."""
        if seed not in self._ordered:
            digests = bytearray()
            for i in range(len(self.labels)):
                digests += hashlib.sha256(f"{seed}\x00{i}".encode()).digest()
            words = np.frombuffer(bytes(digests), dtype=">u8").reshape(-1, 4)
            order = np.lexsort(tuple(words[:, c] for c in (3, 2, 1, 0)))  # column 0 decides first
            self._ordered[seed] = ArrayItems(self.labels, self.path, self.offset, self.row, self.pixels, order)
        return self._ordered[seed]


def source_order(items: Sequence[SourceItem], seed: int) -> Sequence[SourceItem] | None:
    """The seeded order of a lazy sequence that knows it (None: sort the items themselves)."""
    return items.ordered(seed) if isinstance(items, ArrayItems) and items.order is None else None
