"""CutMix and MixUp on a batch: the numpy kernels' arithmetic (stages/mix.py), one entry per copy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

from .runtime import Tensor, add, per_copy, run, u8


def _mix(bases: Tensor, a: dict[str, Tensor], static: tuple[Any, ...]) -> Tensor:
    n, h, w, _ = (int(d) for d in bases.shape)
    partners, box = a["partners"], a["boxes"]
    ys = ops.reshape(ops.arange(h, dtype="int32"), (1, h, 1))
    xs = ops.reshape(ops.arange(w, dtype="int32"), (1, 1, w))

    def edge(k: int) -> Tensor:
        return ops.reshape(box[:, k], (n, 1, 1))

    inside = ops.logical_and(ops.logical_and(ops.greater_equal(ys, edge(0)), ops.less(ys, edge(2))),
                             ops.logical_and(ops.greater_equal(xs, edge(1)), ops.less(xs, edge(3))))
    cut = ops.where(ops.expand_dims(inside, -1), partners, bases)
    blend = add(ops.multiply(per_copy(a["w_base"]), ops.cast(bases, "float32")),
                ops.multiply(per_copy(a["w_partner"]), ops.cast(partners, "float32")))
    blended = u8(ops.clip(ops.round(blend), 0.0, 255.0))
    return ops.where(per_copy(a["is_cut"]), cut, blended)


def mix(bases: Tensor, partners: np.ndarray, entries: Sequence[dict[str, Any]]) -> Tensor:
    """CutMix (partner pixels where y0 <= y < y1 and x0 <= x < x1) or MixUp (round(lam·base +
    (1−lam)·partner) in float32, half to even like np.rint); partners at the bases' size."""
    lams = [e["lambda"] if e["method"] == "mixup" else 1.0 for e in entries]
    arrays = {
        "partners": np.asarray(partners, dtype=np.uint8),
        "is_cut": np.array([e["method"] == "cutmix" for e in entries]),
        "boxes": np.array([e["box"] if e["method"] == "cutmix" else [0, 0, 0, 0] for e in entries], dtype=np.int32),
        # the numpy kernel's float32 weights: lam and (1 - lam) each rounded from float64
        "w_base": np.array(lams, dtype=np.float32),
        "w_partner": np.array([1.0 - lam for lam in lams], dtype=np.float32),
    }
    return run(_mix, bases, arrays)
