"""Grayscale the `tf.image.rgb_to_grayscale` way (`keras_cv.layers.Grayscale`'s kernel), in numpy.

On uint8 TF converts to float32 (x · (1/255)), takes the luma Y = 0.2989·R + 0.5870·G + 0.1140·B in
float32 and converts back with truncation: trunc(Y · 255.5). `output_channels: 3` replicates Y
(`tf.image.grayscale_to_rgb`). A 1-channel image is already grey: Y is the image itself. (KerasCV
casts to float first and returns Y unrounded; the uint8 result here lies in [Y − 1, Y + 0.5].)

Every stage must return the export's channel count (`--channels`, which the TFDS metadata declares),
so `output_channels` 1 only fits a `--channels 1` export and 3 a `--channels 3` one; any other
combination is a usage error before any work. The default (null) keeps the input's channel count,
so one pipeline file serves both kinds of export.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError
from ..registry import Stage, register
from ..spec import Param, number

LUMA = (np.float32(0.2989), np.float32(0.5870), np.float32(0.1140))  # tf.image.rgb_to_grayscale's weights
INV255 = np.float32(1.0 / 255.0)  # convert_image_dtype's uint8 -> float32 scale


def luma(image: np.ndarray) -> np.ndarray:
    """Pure kernel: (H, W) uint8 grey of an RGB or grey uint8 image, as tf.image.rgb_to_grayscale."""
    if image.shape[2] == 1:
        return image[:, :, 0].copy()
    # TF's float32 ops in TF's order, in place: big temporaries cost more than the arithmetic here
    y = np.zeros(image.shape[:2], dtype=np.float32)
    for c in range(3):
        term = image[:, :, c].astype(np.float32)
        term *= INV255
        term *= LUMA[c]
        y += term  # 0 + a is exact, so this is ((a + b) + c) like the tensordot
    y *= np.float32(255.5)
    np.clip(y, 0, 255, out=y)
    return y.astype(np.uint8)


def replicate(grey: np.ndarray, channels: int) -> np.ndarray:
    """(H, W) -> (H, W, channels) copies (OpenCV's GRAY2RGB is many times faster than np.repeat)."""
    if channels == 1:
        return grey[:, :, None]
    import cv2

    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def _output_channels(value: Any, path: str) -> int | None:
    if value is None or (type(value) is int and value in (1, 3)):  # type(): true and 3.0 are not channel counts
        return value
    raise ConfigError(path, f"{value!r} is not accepted; accepted: 1, 3, or null (the input's channel count)")


@register
class Grayscale(Stage):
    name = "grayscale"
    doc = ("Grayscale: tf.image.rgb_to_grayscale luma (keras_cv.layers.Grayscale); the output must keep "
           "the export's --channels, so output_channels 3 fits RGB exports and 1 fits --channels 1.")
    schema = (
        Param("output_channels", "1|3|null", None,
              "channels of the output: 3 = grey replicated (RGB exports), 1 = --channels 1 exports; "
              "null = the input's (KerasCV's default is 1)", _output_channels),
        Param("p", "float in [0, 1]", 1.0, "probability of applying the stage", number(0, 1)),
    )

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return replicate(luma(image), self.config["output_channels"] or image.shape[2])
