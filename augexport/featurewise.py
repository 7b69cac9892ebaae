"""Keras' `featurewise_center` / `featurewise_std_normalization`: a first pass over the sources.

The statistics cannot be stored in image pixels, so the images are written unnormalized and the
per-channel mean and std go into the manifest, to apply at training time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from .codec import Decoder
from .errors import DecodeError
from .pipeline import Pipeline
from .sources import SourceItem
from .stages.keras import KerasStage

FEATUREWISE_NOTE = ("featurewise_center/featurewise_std_normalization cannot be stored in image pixels: the images "
                    "are written unnormalized. At training time subtract mean per channel (and divide by std + 1e-6 when std "
                    "is given), as "
                    "ImageDataGenerator.standardize does after fit(); mean and std are in 0..255 pixel units of "
                    "the source images (multiply both by your rescale factor if you rescale first).")


def featurewise_stats(items: Iterable[SourceItem], pipeline: Pipeline, decoder: Decoder) -> dict[str, Any]:
    """Per-channel mean and std of the decoded source images (as Keras' fit(x) computes them),
    streamed with exact integer running sums; undecodable sources are left out."""
    total = total_sq = None
    pixels = images = 0
    for item in items:
        try:
            pix = item.decode(decoder)
        except DecodeError:
            continue
        flat = pix.reshape(-1, pix.shape[-1]).astype(np.int64)
        s, sq = flat.sum(axis=0), (flat * flat).sum(axis=0)
        total = s if total is None else total + s
        total_sq = sq if total_sq is None else total_sq + sq
        pixels += flat.shape[0]
        images += 1
    if not pixels or total is None or total_sq is None:
        return {"mean": None, "std": None, "images": 0, "pixels": 0, "note": FEATUREWISE_NOTE}
    mean = total / pixels
    var = np.maximum(total_sq / pixels - mean * mean, 0.0)
    want_std = any(isinstance(s, KerasStage) and s.config["featurewise_std_normalization"] for s in pipeline.stages)
    return {"mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in np.sqrt(var)] if want_std else None,
            "images": images, "pixels": pixels, "note": FEATUREWISE_NOTE}


def needs_featurewise_stats(pipeline: Pipeline) -> bool:
    """True when a keras stage asks for featurewise_center or featurewise_std_normalization."""
    return any(isinstance(s, KerasStage) and s.wants_featurewise for s in pipeline.stages)
