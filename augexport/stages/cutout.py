"""Cutout (DeVries & Taylor 2017): square holes of side `size`·min(H, W) around uniform centres,
clipped to the image, filled with a constant."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..registry import Stage, register
from ..spec import Param, number


def cutout_boxes(rng: np.random.Generator, height: int, width: int, size: float, count: int) -> list[list[int]]:
    """Boxes [y0, x0, y1, x1] (end-exclusive) of side round(size·min(H, W)), clipped."""
    side = max(1, int(round(size * min(height, width))))
    boxes = []
    for _ in range(count):
        cy = int(rng.integers(0, height))
        cx = int(rng.integers(0, width))
        y0, x0 = max(cy - side // 2, 0), max(cx - side // 2, 0)
        y1, x1 = min(cy - side // 2 + side, height), min(cx - side // 2 + side, width)
        boxes.append([y0, x0, y1, x1])
    return boxes


def fill_boxes(image: np.ndarray, boxes: list[list[int]], fill: float) -> np.ndarray:
    """Pure kernel: a copy of `image` with every box set to `fill`."""
    out = image.copy()
    value = np.uint8(round(fill))  # 127.5 -> 128, not numpy's truncating cast to 127
    for y0, x0, y1, x1 in boxes:
        out[y0:y1, x0:x1] = value
    return out


@register
class Cutout(Stage):
    name = "cutout"
    doc = ("Cutout: square holes of one fixed size, constant fill (DeVries & Taylor 2017); for holes of random "
           "area and aspect ratio see random_erasing.")
    schema = (
        Param("size", "float in (0, 1]", 0.25, "hole side as a fraction of min(H, W)", number(0, 1, lo_open=True)),
        Param("count", "int in [1, 64]", 1, "number of holes", number(1, 64, integer=True)),
        Param("fill", "float in [0, 255]", 0.0, "fill value", number(0, 255)),
        Param("p", "float in [0, 1]", 1.0, "probability of applying the stage", number(0, 1)),
    )

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        h, w = shape[:2]
        return {"boxes": cutout_boxes(rng, h, w, self.config["size"], self.config["count"])}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return fill_boxes(image, params["boxes"], self.config["fill"])
