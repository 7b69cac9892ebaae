"""Keras' `featurewise_center` / `featurewise_std_normalization`: a first pass over the sources.

The statistics cannot be stored in image pixels, so the images are written unnormalized and the
per-channel mean and std go into the manifest, to apply at training time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
    want_std = any(s.config["featurewise_std_normalization"] for s in keras_stages(pipeline))
    return {"mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in np.sqrt(var)] if want_std else None,
            "images": images, "pixels": pixels, "note": FEATUREWISE_NOTE}


def keras_stages(pipeline: Pipeline) -> Iterator[KerasStage]:
    """Every keras stage the pipeline can run: top level, inside control stages (one_of, ...), and
    in the `classes:` overrides, whose stages see the same data set."""
    lists: list[Iterable[Any]] = [pipeline.stages]
    lists += [c.stages for c in pipeline.classes.values() if c.stages is not None]
    pending = [s for stages in lists for s in stages]
    while pending:
        stage = pending.pop()
        if isinstance(stage, KerasStage):
            yield stage
        pending.extend(getattr(stage, "children", ()) or ())


def needs_featurewise_stats(pipeline: Pipeline) -> bool:
    """True when a keras stage anywhere asks for featurewise_center or featurewise_std_normalization."""
    return any(s.wants_featurewise for s in keras_stages(pipeline))
