"""GridMask (Chen et al. 2020) the KerasCV way (`keras_cv.layers.GridMask`), in numpy.

The mask lives on a square of side S = ceil(sqrt(H² + W²)) so that any rotation still covers the
image. With unit d ~ U[min(H/2, 0.3W), max(H/2, 0.3W) + 1), ratio r and offsets δx, δy ~ U[0, d):
square k (k = 1..S//d + 1) along an axis spans [k·d − δ − r·d, k·d − δ); the masked cells are the
product of the x and y spans. The square is rotated by the angle about its centre (outside = not
masked; a positive angle is counter-clockwise on screen, as in KerasCV's RandomRotation),
centre-cropped to H x W, and masked pixels get the fill. Differences from KerasCV: the rotation
samples the mask by nearest neighbour (KerasCV rotates bilinearly, then any non-zero value counts
as masked), and `gaussian_noise` fills with N(127.5, 64²) clipped to 0..255 (KerasCV draws N(0, 1)
in pixel units, which on 0..255 images is black).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..registry import Stage, register
from ..spec import Param, choice, number, one_of, pair

NOISE_MEAN, NOISE_STD = 127.5, 64.0


def _span(length: int, unit: float, ratio: float, delta: float) -> np.ndarray:
    """Boolean (length,): coordinates inside one of the grid squares' spans along an axis."""
    count = int(length // unit) + 1
    ends = np.arange(1, count + 1, dtype=np.float64) * unit - delta
    starts = ends - ratio * unit
    coords = np.arange(length, dtype=np.float64)[:, None]
    return np.any((coords >= starts) & (coords < ends), axis=1)


def grid_mask(height: int, width: int, params: dict[str, Any]) -> np.ndarray:
    """Pure kernel: boolean (H, W) mask, True where the image is covered."""
    side = int(math.ceil(math.hypot(height, width)))
    xs = _span(side, params["unit"], params["ratio"], params["dx"])
    ys = _span(side, params["unit"], params["ratio"], params["dy"])
    # output pixel (y, x) sits at (y + oy, x + ox) in the square; look up its pre-rotation position.
    # A positive angle turns the grid counter-clockwise on screen (rows down), as KerasCV's
    # RandomRotation does, so the source position is the output's turned clockwise by it.
    oy, ox = (side - height) // 2, (side - width) // 2
    c = (side - 1) / 2.0
    theta = math.radians(params["angle"])
    cos, sin = math.cos(theta), math.sin(theta)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    u, v = xx + ox - c, yy + oy - c
    src_x = np.rint(cos * u - sin * v + c).astype(np.int64)
    src_y = np.rint(sin * u + cos * v + c).astype(np.int64)
    inside = (src_x >= 0) & (src_x < side) & (src_y >= 0) & (src_y < side)
    sx, sy = np.clip(src_x, 0, side - 1), np.clip(src_y, 0, side - 1)
    return inside & xs[sx] & ys[sy]


def fill_pixels(shape: tuple[int, ...], mode: str, value: float, noise_seed: int) -> np.ndarray:
    """The fill image: a constant, or seeded gaussian noise (same seed, same noise)."""
    if mode == "constant":
        return np.full(shape, int(round(value)), dtype=np.uint8)
    noise = np.random.Generator(np.random.PCG64(noise_seed)).normal(NOISE_MEAN, NOISE_STD, size=shape)
    return np.clip(np.rint(noise), 0, 255).astype(np.uint8)


def _range(value: Any) -> list[float]:
    return [0.0, float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]


@register
class GridMask(Stage):
    name = "gridmask"
    doc = "GridMask: a rotated grid of square holes (Chen et al. 2020; keras_cv.layers.GridMask parameters)."
    schema = (
        Param("ratio_factor", "float in [0, 1] or [lo, hi]", [0.0, 0.5],
              "hole side / grid unit, ~ U[lo, hi] (a number x means [0, x]); 0.5 = holes as wide as gaps",
              one_of(number(0, 1), pair(0, 1), accepted="a number in [0, 1] or a list [lo, hi] inside [0, 1]")),
        Param("rotation_factor", "float in [0, 1] or [lo, hi]", 0.15,
              "rotation as a fraction of a full turn, ~ U[-x, x] (or U[lo, hi])",
              one_of(number(0, 1), pair(-1, 1), accepted="a number in [0, 1] or a list [lo, hi] inside [-1, 1]")),
        Param("fill_mode", "constant|gaussian_noise", "constant", "what fills the holes",
              choice("constant", "gaussian_noise")),
        Param("fill_value", "float in [0, 255]", 0.0, "fill for fill_mode constant", number(0, 255)),
        Param("p", "float in [0, 1]", 1.0, "probability of applying the stage", number(0, 1)),
    )

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        h, w = shape[:2]
        lo_r, hi_r = _range(self.config["ratio_factor"])
        rot = self.config["rotation_factor"]
        lo_a, hi_a = (-float(rot), float(rot)) if isinstance(rot, (int, float)) else (float(rot[0]), float(rot[1]))
        ratio = float(rng.uniform(lo_r, hi_r))
        lo_u, hi_u = min(h * 0.5, w * 0.3), max(h * 0.5, w * 0.3) + 1
        unit = float(rng.uniform(lo_u, hi_u))
        params = {
            "ratio": ratio,
            "unit": unit,
            "dx": float(rng.uniform(0, unit)),
            "dy": float(rng.uniform(0, unit)),
            "angle": float(rng.uniform(lo_a, hi_a)) * 360.0,
        }
        if self.config["fill_mode"] == "gaussian_noise":
            params["noise_seed"] = int(rng.integers(0, 2**63 - 1))
        return params

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        mask = grid_mask(image.shape[0], image.shape[1], params)
        fill = fill_pixels(image.shape, self.config["fill_mode"], self.config["fill_value"], params.get("noise_seed", 0))
        return np.where(mask[:, :, None], fill, image)
