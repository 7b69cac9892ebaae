"""Random resized crop, the Inception-style crop of classification recipes, with torchvision's
sampler (`transforms.RandomResizedCrop.get_params`; timm's `RandomResizedCropAndInterpolation` is
the same maths).

For an H x W image with A = H·W, each of `max_attempts` (torchvision: 10) attempts draws
    s ~ U[scale_lo, scale_hi],  log r ~ U[log ratio_lo, log ratio_hi]   (r = width / height)
    w = round(sqrt(s·A·r)),  h = round(sqrt(s·A / r))                     (Python's round: half to even)
and accepts when 0 < w <= W and 0 < h <= H, with the corner y0 ~ U{0..H−h}, x0 ~ U{0..W−w}. When no
attempt is accepted the fallback is a centre crop of the whole image clamped to the ratio range:
W / H < ratio_lo -> w = W, h = round(W / ratio_lo); W / H > ratio_hi -> h = H, w = round(H · ratio_hi);
otherwise the whole image; corner ((H − h) // 2, (W − w) // 2).

The crop is resized back to the input size, which is `image_size` when the pipeline sets one
(images are resized to it at decode), so a copy keeps the size every other stage and the mixing
step expect. Note what that means: the crop is taken from the already-resized image, not from the
full-resolution source. Resizing is `tf.image.resize` with half-pixel centres and no antialias
(the crop is never larger than the output, so antialiasing would change nothing): bilinear rounded
to the nearest uint8, or nearest neighbour (source index floor((i + 0.5)·in / out)).

TF's own `sample_distorted_bounding_box` is not what this follows: it draws the ratio uniformly
(not log-uniformly), then the height uniformly between the heights of the extreme areas, and falls
back to the whole image.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..registry import Stage, register
from ..spec import Param, choice, number, pair
from .tf_image import resize_bilinear

# Aspect ratios beyond 1:10000 either way suit no practical image, and near float's limits
# area / ratio overflows to inf (a crash of the dry run): bounded, so that is a config error.
RATIO_MIN, RATIO_MAX = 0.0001, 10000


def sample_crop_box(rng: np.random.Generator, height: int, width: int, scale: list[float], ratio: list[float],
                    max_attempts: int) -> tuple[list[int], bool]:
    """(box [y0, x0, y1, x1] end-exclusive, fallback?) by torchvision's RandomResizedCrop.get_params."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(max_attempts):
        target_area = area * float(rng.uniform(scale[0], scale[1]))
        aspect = math.exp(float(rng.uniform(log_lo, log_hi)))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            y0 = int(rng.integers(0, height - h + 1))
            x0 = int(rng.integers(0, width - w + 1))
            return [y0, x0, y0 + h, x0 + w], False
    return central_fallback(height, width, ratio), True


def central_fallback(height: int, width: int, ratio: list[float]) -> list[int]:
    """torchvision's fallback: the largest centred crop whose ratio is clamped into `ratio`, at
    least one pixel each way (where the ratio rounds a side to zero torchvision returns an empty
    crop, which no resize can take)."""
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w, h = width, max(1, int(round(width / min(ratio))))
    elif in_ratio > max(ratio):
        w, h = max(1, int(round(height * max(ratio)))), height
    else:
        w, h = width, height
    y0, x0 = (height - h) // 2, (width - w) // 2
    return [y0, x0, y0 + h, x0 + w]


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`tf.image.resize(nearest)`: half-pixel centres, source index floor((i + 0.5)·scale) in float32."""
    def index(n_out: int, n_in: int) -> np.ndarray:
        scale = np.float32(n_in) / np.float32(n_out)
        idx = np.floor((np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale).astype(np.int64)
        return np.minimum(idx, n_in - 1)

    rows = np.take(image, index(height, image.shape[0]), axis=0)  # two 1-D takes: ~4x faster than 2-D fancy indexing
    return np.take(rows, index(width, image.shape[1]), axis=1)


def crop_and_resize(image: np.ndarray, box: list[int], interpolation: str) -> np.ndarray:
    """Pure kernel: `image[y0:y1, x0:x1]` resized back to the image's own size."""
    y0, x0, y1, x1 = box
    crop = image[y0:y1, x0:x1]
    h, w = image.shape[:2]
    if interpolation == "nearest":
        return resize_nearest(crop, h, w)
    return resize_bilinear(crop, h, w)


@register
class RandomResizedCrop(Stage):
    name = "random_resized_crop"
    doc = ("Inception-style random crop (torchvision RandomResizedCrop / timm sampler: area ~ U[scale], "
           "log width/height ratio ~ U[log ratio], 10 attempts, centre-crop fallback), resized back to the "
           "input size (= image_size when set).")
    schema = (
        Param("scale", "[lo, hi] inside (0, 1]", [0.08, 1.0], "crop area as a fraction of the image area, ~ U[lo, hi]",
              pair(0, 1, lo_open=True)),
        Param("ratio", f"[lo, hi] inside [{RATIO_MIN}, {RATIO_MAX}]", [3 / 4, 4 / 3],
              "crop width / height, log-uniform in [lo, hi]", pair(RATIO_MIN, RATIO_MAX)),
        Param("interpolation", "bilinear|nearest", "bilinear", "tf.image.resize method for the crop",
              choice("bilinear", "nearest")),
        Param("max_attempts", "int in [1, 1000]", 10, "attempts before the centre-crop fallback (torchvision: 10)",
              number(1, 1000, integer=True)),
        Param("p", "float in [0, 1]", 1.0, "probability of applying the stage", number(0, 1)),
    )

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        box, fallback = sample_crop_box(rng, shape[0], shape[1], self.config["scale"], self.config["ratio"],
                                        self.config["max_attempts"])
        return {"box": box, "fallback": fallback}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return crop_and_resize(image, params["box"], self.config["interpolation"])
