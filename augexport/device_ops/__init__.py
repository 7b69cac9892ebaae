"""The device path's batched kernels, in Keras 3's backend-neutral `keras.ops` (main process only).

The same code runs under KERAS_BACKEND=tensorflow, jax or torch, on the device the backend puts
its tensors on (its GPU when it sees one). A batch is one (N, H, W, C) uint8 tensor of copies of
one shape; each kernel takes the copies' recorded params (drawn in the workers, as on the CPU
path) and follows the CPU kernel's arithmetic step by step: `warp` (the keras stage, OpenCV's
fixed point), `colour` (tf_image, TF's float32 formulas), `mixing` (CutMix/MixUp). On IEEE
float32 they give the CPU path's bytes; docs/performance.md has what was measured. Workers
never import this package (it imports Keras).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..stages.mix import match_size
from .colour import tf_image
from .mixing import mix
from .runtime import Tensor, to_device, to_host
from .warp import keras_warp

__all__ = ["apply_stage", "keras_warp", "mix", "mix_arrays", "tf_image", "to_device", "to_host"]


def apply_stage(stage: Any, batch: Tensor, params: Sequence[dict[str, Any]]) -> Tensor:
    """One device-capable stage (offload.device_capable) on a batch, from each copy's drawn params;
    a copy whose stage did not apply (`applied: false`) gets the stage's identity params."""
    config = stage.config
    applied = [p.get("applied", True) is not False for p in params]
    if stage.name == "keras":  # no draw: Keras' identity
        return keras_warp(batch, [p if a else {} for p, a in zip(params, applied, strict=True)],
                          fill_mode=config["fill_mode"], cval=config["cval"], order=config["interpolation_order"],
                          fix_axes=config["fix_axes"])
    if stage.name == "tf_image":
        skipped = {"ops": [{"op": o["op"], "applied": False} for o in config["ops"]]}
        return tf_image(batch, [p if a else skipped for p, a in zip(params, applied, strict=True)])
    raise ValueError(f"stage {stage.name!r} has no device kernel")


def mix_arrays(bases: Sequence[np.ndarray], partners: Sequence[np.ndarray], entries: Sequence[dict[str, Any]]
               ) -> np.ndarray:
    """`mix` from host arrays; partners of another size are resized to the base's first, as on the CPU."""
    resized = np.stack([match_size(np.asarray(p), np.asarray(b).shape) for p, b in zip(partners, bases, strict=True)])
    return to_host(mix(to_device(bases), resized, entries))
