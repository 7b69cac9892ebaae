"""Random Erasing (Zhong et al. 2020) with timm's sampler (`timm.data.random_erasing.RandomErasing`).

Unlike `cutout` (squares of one fixed size), each erased box has a random area and aspect ratio.
With probability p the image gets n boxes, n = min_count when min_count == max_count, else
n ~ U{min_count..max_count}. For an H x W image with A = H·W, each box takes up to `max_attempts`
(timm: 10) attempts of
    s ~ U[scale_lo, scale_hi],  log r ~ U[log ratio_lo, log ratio_hi]   (r = height / width, as timm)
    h = round(sqrt(s·A/n · r)),  w = round(sqrt(s·A/n / r))               (the area is shared by n boxes)
accepted when h < H and w < W (strictly, as timm), at y0 ~ U{0..H−h}, x0 ~ U{0..W−w}; a box whose
attempts all fail is skipped. On tiny images a side can round to 0: the box erases nothing (timm too).

timm erases a tensor already normalized by (mean, std), filling 0 ('const'), one N(0, 1) colour per
box ('rand') or N(0, 1) per pixel ('pixel'). Here images are uint8, so the fill is that value mapped
back to pixels: mean + std·z, rounded to the nearest integer and clipped to 0..255. `mean` and `std`
are the normalization of your training input in pixel units (default ImageNet's, timm's default:
255·(0.485, 0.456, 0.406) and 255·(0.229, 0.224, 0.225)), so 'const' fills the mean colour. A
3-list on a 1-channel image collapses to its luma (tf.image.rgb_to_grayscale weights).

Recorded: the count, the boxes, the uint8 colour of each box for 'rand', and for 'pixel' a seed from
which apply draws the float32 noise of the boxes in order (the same seed gives the same pixels).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..registry import Stage, register
from ..spec import Param, choice, number, pair
from .grayscale import LUMA

IMAGENET_MEAN = [123.675, 116.28, 103.53]  # 255 · timm's IMAGENET_DEFAULT_MEAN
IMAGENET_STD = [58.395, 57.12, 57.375]  # 255 · timm's IMAGENET_DEFAULT_STD
# Aspect ratios beyond 1:10000 either way suit no practical image, and near float's limits
# area / ratio overflows to inf (a crash of the dry run): bounded, so that is a config error.
RATIO_MIN, RATIO_MAX = 0.0001, 10000


def erasing_boxes(rng: np.random.Generator, height: int, width: int, count: int, config: dict[str, Any],
                  on_box: Any = None) -> list[list[int]]:
    """timm's `_erase` box loop: `count` boxes [y0, x0, y1, x1] (end-exclusive); `on_box` is called after
    each accepted box (where timm draws the box's fill)."""
    area = height * width
    lo, hi = config["scale"]
    log_lo, log_hi = math.log(config["ratio"][0]), math.log(config["ratio"][1])
    boxes = []
    for _ in range(count):
        for _attempt in range(config["max_attempts"]):
            target_area = float(rng.uniform(lo, hi)) * area / count
            aspect = math.exp(float(rng.uniform(log_lo, log_hi)))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < width and h < height:
                y0 = int(rng.integers(0, height - h + 1))
                x0 = int(rng.integers(0, width - w + 1))
                boxes.append([y0, x0, y0 + h, x0 + w])
                if on_box is not None:
                    on_box()
                break
    return boxes


def per_channel(value: float | list[float], channels: int) -> np.ndarray:
    """`mean`/`std` as one float64 per channel: a number for all, a 3-list as is (its luma on 1 channel)."""
    if isinstance(value, (int, float)):
        return np.full(channels, float(value))
    values = np.asarray(value, dtype=np.float64)
    if channels == 1:
        return np.array([float(np.dot(values, np.asarray(LUMA, dtype=np.float64)))])
    return values


def to_pixels(z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Normalized values z -> uint8 pixels mean + std·z, rounded and clipped (channels last; z is
    overwritten: in place, because the per-pixel noise is the large array here)."""
    z *= std.astype(z.dtype)
    z += mean.astype(z.dtype)
    np.rint(z, out=z)
    np.clip(z, 0, 255, out=z)
    return z.astype(np.uint8)


def erase(image: np.ndarray, params: dict[str, Any], config: dict[str, Any]) -> np.ndarray:
    """Pure kernel: a copy of `image` with the recorded boxes filled as `config["mode"]` says."""
    out = image.copy()
    c = image.shape[2]
    mean, std = per_channel(config["mean"], c), per_channel(config["std"], c)
    noise = np.random.Generator(np.random.PCG64(params["noise_seed"])) if config["mode"] == "pixel" else None
    for k, (y0, x0, y1, x1) in enumerate(params["boxes"]):
        if noise is not None:
            out[y0:y1, x0:x1] = to_pixels(noise.standard_normal((y1 - y0, x1 - x0, c), dtype=np.float32), mean, std)
        else:  # one colour; a tiled row broadcasts over the rows (a bare colour would copy 3 bytes at a time)
            colour = np.asarray(params["colors"][k], np.uint8) if config["mode"] == "rand" else to_pixels(np.zeros(c), mean, std)
            out[y0:y1, x0:x1] = np.tile(colour, (x1 - x0, 1))
    return out


def _level(value: Any, path: str) -> float | list[float]:
    """A pixel level for every channel: a number in [0, 255] or a list [r, g, b] of them."""
    accepted = "a number in [0, 255] or a list of 3 numbers in [0, 255]"
    check = number(0, 255)
    if isinstance(value, (list, tuple)):
        if len(value) != 3:
            raise ConfigError(path, f"{value!r} is not accepted; accepted: {accepted}")
        return [check(v, f"{path}[{i}]") for i, v in enumerate(value)]
    try:
        return check(value, path)
    except ConfigError:
        raise ConfigError(path, f"{value!r} is not accepted; accepted: {accepted}") from None


@register
class RandomErasing(Stage):
    name = "random_erasing"
    doc = ("Random Erasing (Zhong et al. 2020, timm RandomErasing): boxes of random area and height/width "
           "ratio, filled with the mean colour or normal noise (cutout: fixed-size squares, constant fill).")
    schema = (
        Param("p", "float in [0, 1]", 0.5, "probability of erasing (timm's probability)", number(0, 1)),
        Param("scale", "[lo, hi] inside (0, 1]", [0.02, 1 / 3], "box area as a fraction of the image, "
              "~ U[lo, hi] / count (timm shares the area among the boxes)", pair(0, 1, lo_open=True)),
        Param("ratio", f"[lo, hi] inside [{RATIO_MIN}, {RATIO_MAX}]", [0.3, 3.3],
              "box height / width, log-uniform in [lo, hi]", pair(RATIO_MIN, RATIO_MAX)),
        Param("mode", "const|rand|pixel", "const", "fill: the mean colour, one normal colour per box, or "
              "normal noise per pixel (mean + std·N(0, 1) in pixels)", choice("const", "rand", "pixel")),
        Param("min_count", "int in [1, 64]", 1, "fewest boxes", number(1, 64, integer=True)),
        Param("max_count", "int in [1, 64]", 1, "most boxes (the count is uniform in [min_count, max_count])",
              number(1, 64, integer=True)),
        Param("max_attempts", "int in [1, 1000]", 10, "attempts per box before it is skipped (timm: 10)",
              number(1, 1000, integer=True)),
        Param("mean", "number or [r, g, b] in 0..255", IMAGENET_MEAN,
              "normalization mean in pixels (default ImageNet's); the 'const' fill", _level),
        Param("std", "number or [r, g, b] in 0..255", IMAGENET_STD,
              "normalization std in pixels (default ImageNet's); scales the 'rand' and 'pixel' noise", _level),
    )

    @classmethod
    def from_spec(cls, spec: Any, path: str) -> Stage:
        stage = super().from_spec(spec, path)
        lo, hi = stage.config["min_count"], stage.config["max_count"]
        if hi < lo:
            raise ConfigError(f"{path}.max_count", f"{hi!r} is less than min_count ({lo!r}); accepted: >= min_count")
        return stage

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        cfg = self.config
        lo, hi = cfg["min_count"], cfg["max_count"]
        count = lo if lo == hi else int(rng.integers(lo, hi + 1))
        colors: list[list[int]] = []
        mean, std = per_channel(cfg["mean"], shape[2]), per_channel(cfg["std"], shape[2])

        def draw_color() -> None:  # timm draws each box's fill right after placing it
            colors.append(to_pixels(rng.standard_normal(shape[2]), mean, std).tolist())

        boxes = erasing_boxes(rng, shape[0], shape[1], count, cfg, draw_color if cfg["mode"] == "rand" else None)
        params: dict[str, Any] = {"count": count, "boxes": boxes}
        if cfg["mode"] == "rand":
            params["colors"] = colors
        elif cfg["mode"] == "pixel":
            params["noise_seed"] = int(rng.integers(0, 2**63 - 1))
        return params

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return erase(image, params, self.config)
