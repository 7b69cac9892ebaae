"""Resizing at decode: augexport's stretch (the default) or Keras' `image_dataset_from_directory` modes.

Without `interpolation`, `crop_to_aspect_ratio` or `pad_to_aspect_ratio` an image is stretched to
`image_size` as augexport always did (OpenCV bilinear, area averaging when a side shrinks more
than 2x; `codec.resize`), so existing exports keep their bytes. Any of the three keys selects the
semantics of keras 3.15's `image_dataset_from_directory` (TF backend):

- plain: `tf.image.resize(img, size, method)` (a stretch);
- `crop_to_aspect_ratio`: `keras.utils.smart_resize`: the largest centred box of the target aspect
  ratio, `crop_h = int(float32(W·th) / tw)` clamped to [1, H] (crop_w alike), start `int((H − crop_h) / 2)`,
  then `tf.image.resize`;
- `pad_to_aspect_ratio`: `tf.image.resize_with_pad`: resize to fit inside (`ratio = max(W/tw, H/th)`,
  `floor(H/ratio)` × `floor(W/ratio)`), then centre on zeros (offset `floor((th − H/ratio) / 2)`).
  (`keras.ops.image.resize(pad_to_aspect_ratio=True)` pads first and resizes after, which blends the
  zero border into the edge pixels; the dataset utility, and so augexport, does not.)

Never antialiased, like the dataset utility. The kernels are TensorFlow's own, re-implemented in
numpy as separable weights (one gather per tap and axis): `resize_bilinear`/`resize_bicubic`
(half-pixel centres; bicubic: Keys a = −0.5 from TF's 1024-entry table, taps outside the image
dropped and the rest renormalised), `resize_nearest_neighbor` (half-pixel, float32 index),
`resize_area` (box overlap) and `scale_and_translate` for lanczos3/lanczos5 (normalised spans).
The float result is rounded half to even and clipped to uint8, so the stored pixel is Keras'
float pixel rounded (tests/test_resize_modes.py measures it against Keras on the same images).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError

INTERPOLATIONS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5")
KEYS = ("interpolation", "crop_to_aspect_ratio", "pad_to_aspect_ratio")
_F = np.float32


@dataclass(frozen=True)
class ResizeMode:
    """How a decoded image reaches `image_size`; all defaults = augexport's stretch."""

    interpolation: str | None = None
    crop_to_aspect_ratio: bool = False
    pad_to_aspect_ratio: bool = False

    @property
    def keras(self) -> bool:
        """True when any Keras key is set (then every resize follows Keras)."""
        return self.interpolation is not None or self.crop_to_aspect_ratio or self.pad_to_aspect_ratio

    def to_spec(self) -> dict[str, Any]:
        """Only the keys that were set: a pipeline without them resolves to what it always did."""
        spec: dict[str, Any] = {}
        if self.interpolation is not None:
            spec["interpolation"] = self.interpolation
        if self.crop_to_aspect_ratio:
            spec["crop_to_aspect_ratio"] = True
        if self.pad_to_aspect_ratio:
            spec["pad_to_aspect_ratio"] = True
        return spec


def resize_mode(spec: Mapping[str, Any], image_size: tuple[int, int] | None) -> ResizeMode:
    """The validated resize keys of a pipeline spec (ConfigError naming the key)."""
    interpolation = spec.get("interpolation")
    if interpolation is not None and interpolation not in INTERPOLATIONS:
        raise ConfigError("interpolation", f"{interpolation!r} is not accepted; accepted: {', '.join(INTERPOLATIONS)}")
    flags = {}
    for key in ("crop_to_aspect_ratio", "pad_to_aspect_ratio"):
        value = spec.get(key, False)
        if value is None:
            value = False
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        flags[key] = value
    if flags["crop_to_aspect_ratio"] and flags["pad_to_aspect_ratio"]:
        raise ConfigError("pad_to_aspect_ratio", "crop_to_aspect_ratio and pad_to_aspect_ratio are exclusive "
                          "(as in keras.utils.image_dataset_from_directory); set one of them")
    mode = ResizeMode(interpolation, **flags)
    if mode.keras and image_size is None:
        key = next(k for k in KEYS if spec.get(k) not in (None, False))
        raise ConfigError(key, "applies when images are resized; set image_size (or --image-size) too")
    return mode


# -- the Keras modes -------------------------------------------------------------------------
def keras_resize(image: np.ndarray, size: tuple[int, int], mode: ResizeMode) -> np.ndarray:
    """uint8 (H, W, C) -> uint8 `size` with `image_dataset_from_directory`'s semantics (see module doc)."""
    method = mode.interpolation or "bilinear"
    th, tw = size
    h, w = image.shape[:2]
    if mode.crop_to_aspect_ratio:
        ch = max(min(h, int(_F(w * th) / _F(tw))), 1)
        cw = max(min(w, int(_F(h * tw) / _F(th))), 1)
        y0, x0 = int(_F(h - ch) / 2), int(_F(w - cw) / 2)
        return _to_uint8(resample(image[y0:y0 + ch, x0:x0 + cw], size, method))
    if mode.pad_to_aspect_ratio:
        ratio = max(_F(w) / _F(tw), _F(h) / _F(th))
        rh_f, rw_f = _F(h) / ratio, _F(w) / ratio
        # TF fails where a side fits to 0 px (a very skinny image, a tiny size); keep 1 px instead
        rh, rw = max(1, int(math.floor(rh_f))), max(1, int(math.floor(rw_f)))
        py = max(0, int(math.floor((_F(th) - rh_f) / 2)))
        px = max(0, int(math.floor((_F(tw) - rw_f) / 2)))
        out = np.zeros((th, tw, image.shape[2]), np.uint8)
        out[py:py + rh, px:px + rw] = _to_uint8(resample(image, (rh, rw), method))
        return out
    return _to_uint8(resample(image, size, method))


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def resample(image: np.ndarray, size: tuple[int, int], method: str) -> np.ndarray:
    """`tf.image.resize(image, size, method, antialias=False)` as float64 (H', W', C)."""
    if method == "nearest":
        rows = np.take(image, _nearest_index(image.shape[0], size[0]), axis=0)
        return np.take(rows, _nearest_index(image.shape[1], size[1]), axis=1).astype(np.float64)
    weights = _WEIGHTS[method]
    iy, wy = weights(image.shape[0], size[0])
    ix, wx = weights(image.shape[1], size[1])
    src = image.astype(np.float64)
    rows = sum(wy[:, k, None, None] * src[iy[:, k]] for k in range(iy.shape[1]))
    return sum(wx[None, :, k, None] * rows[:, ix[:, k]] for k in range(ix.shape[1]))  # type: ignore[no-any-return]


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """resize_nearest_neighbor, half-pixel: floor((i + 0.5)·scale) in float32, clamped."""
    scale = _F(n_in) / _F(n_out)
    idx = np.floor((np.arange(n_out, dtype=_F) + _F(0.5)) * scale).astype(np.int64)
    return np.clip(idx, 0, n_in - 1)


def _bilinear(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """resize_bilinear, half-pixel: in = (i + 0.5)·scale − 0.5; lower = max(floor, 0), upper = min(ceil, n−1)."""
    scale = _F(n_in) / _F(n_out)
    pos = (np.arange(n_out, dtype=_F) + _F(0.5)) * scale - _F(0.5)
    low_f = np.floor(pos)
    lerp = (pos - low_f).astype(np.float64)
    low = np.maximum(low_f.astype(np.int64), 0)
    high = np.minimum(np.ceil(pos).astype(np.int64), n_in - 1)
    return np.stack([low, high], 1), np.stack([1.0 - lerp, lerp], 1)


def _keys_table(a: float = -0.5, size: int = 1024) -> np.ndarray:
    """TF's bicubic coefficient table: [k·2] = W(x), [k·2+1] = W(x + 1) for x = k/size, in float32."""
    x = (np.arange(size + 1) / size).astype(_F).astype(np.float64)  # float x, double a: as TF computes it
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    x1 = (x.astype(_F) + _F(1)).astype(np.float64)
    far = ((a * x1 - 5 * a) * x1 + 8 * a) * x1 - 4 * a
    return np.stack([near, far], 1).reshape(-1).astype(_F)


_KEYS_TABLE = _keys_table()


def _bicubic(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """resize_bicubic, half-pixel (Keys a = −0.5): delta quantised to 1/1024, taps outside dropped, renormalised."""
    scale = _F(n_in) / _F(n_out)
    pos = (np.arange(n_out, dtype=_F) + _F(0.5)) * scale - _F(0.5)
    base = np.floor(pos).astype(np.int64)
    off = np.rint((pos - np.floor(pos)) * _F(1024)).astype(np.int64)
    t = _KEYS_TABLE
    raw = np.stack([t[off * 2 + 1], t[off * 2], t[(1024 - off) * 2], t[(1024 - off) * 2 + 1]], 1)
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    inside = (taps >= 0) & (taps < n_in)
    w = np.where(inside, raw, _F(0)).astype(_F)
    total = w.sum(1, dtype=_F)
    w = np.where(np.abs(total)[:, None] >= 1000 * np.finfo(_F).tiny, w * (_F(1) / total)[:, None], w)
    return np.clip(taps, 0, n_in - 1), w.astype(np.float64)


def _area(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """resize_area: output cell i covers [i·s, (i+1)·s) of the input (s = n_in / n_out); weight of
    input cell j = its overlap with that box, all divided by s."""
    s = _F(n_in) / _F(n_out)
    lo = np.arange(n_out, dtype=_F) * s
    hi = (np.arange(n_out, dtype=_F) + 1) * s
    start = np.floor(lo).astype(np.int64)
    taps = int((np.ceil(hi).astype(np.int64) - start).max())
    j = start[:, None] + np.arange(taps)[None, :]
    jf = j.astype(_F)
    lo_c, hi_c = lo[:, None], hi[:, None]
    w = np.where(jf < lo_c, np.where(jf + 1 > hi_c, s, jf + 1 - lo_c), np.where(jf + 1 > hi_c, hi_c - jf, _F(1)))
    w = np.where(j < np.ceil(hi).astype(np.int64)[:, None], w, 0).astype(np.float64) / float(s)
    return np.minimum(j, n_in - 1), w


def _lanczos(radius: int) -> Any:
    def kernel(x: np.ndarray) -> np.ndarray:
        """TF's LanczosKernelFunc: radius·sin(πx)·sin(πx/radius)/(πx)², 1 near 0, 0 beyond the radius."""
        pi = _F(3.14159265359)
        x = np.abs(x).astype(_F)
        with np.errstate(divide="ignore", invalid="ignore"):
            v = _F(radius) * np.sin(pi * x) * np.sin(pi * x / _F(radius)) / (pi * pi * x * x)
        return np.where(x > radius, _F(0), np.where(x <= _F(1e-3), _F(1), v)).astype(_F)

    def weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        """scale_and_translate without antialias: span around (i + 0.5)/scale, weights normalised."""
        inv_scale = _F(1) / (_F(n_out) / _F(n_in))
        sample = (np.arange(n_out, dtype=_F) + _F(0.5)) * inv_scale
        start = np.clip(np.ceil(sample - _F(radius) - _F(0.5)).astype(np.int64), 0, n_in - 1)
        end = np.clip(np.floor(sample + _F(radius) - _F(0.5)).astype(np.int64), 0, n_in - 1) + 1
        span = min(2 * radius + 1, n_in)
        j = start[:, None] + np.arange(span)[None, :]
        w = kernel(j.astype(_F) + _F(0.5) - sample[:, None])
        w = np.where(j < end[:, None], w, _F(0))
        total = w.sum(1, dtype=_F)
        w = np.where(np.abs(total)[:, None] >= 1000 * np.finfo(_F).tiny, w * (_F(1) / total)[:, None], w)
        outside = (sample < 0) | (sample > n_in)
        w[outside] = 0
        return np.minimum(j, n_in - 1), w.astype(np.float64)

    return weights


_WEIGHTS = {"bilinear": _bilinear, "bicubic": _bicubic, "area": _area, "lanczos3": _lanczos(3), "lanczos5": _lanczos(5)}
