"""Batched TensorFlow kernels for CutMix/MixUp, for batch stages run on a device.

The parameters (boxes, lambdas) always come from the numpy sampling in `stages.mix`, so both
paths mix with the same boxes and lambda; this module only applies them, a whole batch at once.
TensorFlow is imported inside the functions: worker processes never import this module's TF.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .mix import match_size

FORCE_ENV = "AUGEXPORT_FORCE_TF_MIX"


def mix_batch_tf(bases: np.ndarray | Sequence[np.ndarray], partners: np.ndarray | Sequence[np.ndarray],
                 params_list: Sequence[dict[str, Any]]) -> np.ndarray:
    """Mix N (H, W, C) uint8 bases with their partners (resized to the base size first) in one TF op.

    CutMix: partner pixels where y0 <= y < y1 and x0 <= x < x1; MixUp: round(lam·base + (1−lam)·partner)
    in float32, rounding half to even like `np.rint`. Returns a uint8 (N, H, W, C) array.
    """
    import tensorflow as tf

    base_arr = np.stack([np.asarray(b) for b in bases])
    if len(params_list) != len(base_arr) or len(partners) != len(base_arr):
        raise ValueError(f"{len(base_arr)} bases, {len(partners)} partners, {len(params_list)} params: must match")
    partner_arr = np.stack([match_size(np.asarray(p), base_arr.shape[1:]) for p in partners])
    n, h, w, _ = base_arr.shape
    is_cut = np.array([p["method"] == "cutmix" for p in params_list])
    boxes = np.array([p["box"] if p["method"] == "cutmix" else [0, 0, 0, 0] for p in params_list], dtype=np.int32)
    lams = [p["lambda"] if p["method"] == "mixup" else 1.0 for p in params_list]
    # the same float32 weights as the numpy kernel: lam and (1 - lam) each rounded from float64
    w_base = np.array(lams, dtype=np.float32).reshape(n, 1, 1, 1)
    w_partner = np.array([1.0 - lam for lam in lams], dtype=np.float32).reshape(n, 1, 1, 1)

    base_t = tf.constant(base_arr)
    partner_t = tf.constant(partner_arr)
    box_t = tf.constant(boxes.reshape(n, 4, 1, 1))
    ys = tf.reshape(tf.range(h, dtype=tf.int32), (1, h, 1))
    xs = tf.reshape(tf.range(w, dtype=tf.int32), (1, 1, w))
    inside = (ys >= box_t[:, 0]) & (ys < box_t[:, 2]) & (xs >= box_t[:, 1]) & (xs < box_t[:, 3])
    cut = tf.where(inside[..., None], partner_t, base_t)

    blend = tf.constant(w_base) * tf.cast(base_t, tf.float32) + tf.constant(w_partner) * tf.cast(partner_t, tf.float32)
    blended = tf.cast(tf.clip_by_value(tf.round(blend), 0.0, 255.0), tf.uint8)

    out = tf.where(tf.reshape(tf.constant(is_cut), (n, 1, 1, 1)), cut, blended)
    return out.numpy()

