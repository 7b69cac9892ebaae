"""`tf_image`: the `tf.image` random ops with TF's names, arguments and formulas, in numpy/OpenCV.

Workers never import TensorFlow, so each op is re-implemented from TF's source and checked against
`tf.image.adjust_*` in the tests. TF's uint8 path is kept exactly: `convert_image_dtype` to float32
(x · (1/255)), the float op, then back with saturation, i.e. trunc(clip(y · 255.5, 0, 255)).

Each op draws its factor from the example's generator (TF's own distributions: uniform over
[-max_delta, max_delta) or [lower, upper), integer JPEG quality in [min, max)) and records it, e.g.
`{"op": "random_brightness", "delta": 0.13}`; applying is then pure. Every op also takes `p`
(augexport's addition, default 1.0): the probability that the op runs at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..registry import Stage, register
from ..spec import (
    Param,
    boolean,
    close_matches,
    number,
    one_key_items,
    one_of,
    pair,
    validate_mapping,
)

_INV255 = np.float32(1.0 / 255.0)


# -- TF's dtype conversions -----------------------------------------------------------------------
def to_float(image: np.ndarray) -> np.ndarray:
    """`tf.image.convert_image_dtype(uint8 -> float32)`: x · (1/255) in float32."""
    return image.astype(np.float32) * _INV255


def to_uint8(image: np.ndarray) -> np.ndarray:
    """`convert_image_dtype(float32 -> uint8, saturate=True)`: trunc(clip(x · 255.5, 0, 255))."""
    return np.clip(image * np.float32(255.5), 0, 255).astype(np.uint8)


# -- pure kernels (uint8 in, uint8 out, input never modified) -------------------------------------
def adjust_brightness(image: np.ndarray, delta: float) -> np.ndarray:
    return to_uint8(to_float(image) + np.float32(delta))


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Per-channel mean over H, W: (x − mean) · factor + mean (TF's AdjustContrastv2)."""
    x = to_float(image)
    mean = x.mean(axis=(0, 1), keepdims=True, dtype=np.float32)
    return to_uint8((x - mean) * np.float32(factor) + mean)


def _rgb_planes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = to_float(image)
    return x[..., 0], x[..., 1], x[..., 2]


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """TF's AdjustSaturation kernel: RGB -> HSV (h in [0, 1)), s' = clip(s · factor, 0, 1), back."""
    if image.shape[2] != 3:
        return image.copy()  # grey has no saturation
    r, g, b = _rgb_planes(image)
    v = np.maximum(np.maximum(r, g), b)
    rng_ = v - np.minimum(np.minimum(r, g), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(v > 0, rng_ / v, np.float32(0)).astype(np.float32)
        norm = np.float32(1.0) / (np.float32(6.0) * rng_)
        h = np.where(r == v, norm * (g - b),
                     np.where(g == v, norm * (b - r) + np.float32(2.0 / 6.0), norm * (r - g) + np.float32(4.0 / 6.0)))
    h = np.where(rng_ <= 0, np.float32(0), h)
    h = np.where(h < 0, h + np.float32(1), h).astype(np.float32)
    s = np.clip(s * np.float32(factor), 0, 1).astype(np.float32)
    # hsv -> rgb, TF's way
    c = s * v
    m = v - c
    dh = h * np.float32(6)
    cat = dh.astype(np.int32)
    fmodu = np.mod(dh, np.float32(2)).astype(np.float32)  # dh >= 0 here, so TF's while loops are a mod
    x = c * (np.float32(1) - np.abs(fmodu - np.float32(1)))
    zero = np.zeros_like(c)
    rr = np.select([cat == 0, cat == 1, cat == 2, cat == 3, cat == 4, cat == 5], [c, x, zero, zero, x, c], zero)
    gg = np.select([cat == 0, cat == 1, cat == 2, cat == 3, cat == 4, cat == 5], [x, c, c, x, zero, zero], zero)
    bb = np.select([cat == 0, cat == 1, cat == 2, cat == 3, cat == 4, cat == 5], [zero, zero, x, c, c, x], zero)
    return to_uint8(np.stack([rr + m, gg + m, bb + m], axis=-1))


def adjust_hue(image: np.ndarray, delta: float) -> np.ndarray:
    """TF's AdjustHue kernel: hue h in [0, 6) from the (max, mid, min) ordering, h += 6·delta
    (wrapped), then rebuilt from (h, v_min, v_max); saturation and value are kept."""
    if image.shape[2] != 3:
        return image.copy()
    r, g, b = _rgb_planes(image)
    # TF's six orderings (ties may fall on either side: both give the same colour)
    r_lt_g = r < g
    cat = np.where(r_lt_g, np.where(b < r, 1, np.where(b > g, 3, 2)), np.where(b < g, 0, np.where(b > r, 4, 5)))
    conds = [cat == 0, cat == 1, cat == 2, cat == 3, cat == 4]
    vmax = np.select(conds, [r, g, g, b, b], r)
    vmid = np.select(conds, [g, r, b, g, r], b)
    vmin = np.select(conds, [b, b, r, r, g], g)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (vmid - vmin) / (vmax - vmin)
    increase = (cat & 1) == 0
    h = (cat + np.where(increase, ratio, np.float32(1) - ratio)).astype(np.float32)
    h = np.where(vmax == vmin, np.float32(0), h)
    h = h + np.float32(delta) * np.float32(6)
    h = np.where(h < 0, h + np.float32(6), h)
    h = np.where(h >= 6, h - np.float32(6), h).astype(np.float32)
    hcat = h.astype(np.int32)
    ratio = h - hcat
    ratio = np.where((hcat & 1) == 0, ratio, np.float32(1) - ratio)
    mid = vmin + ratio * (vmax - vmin)
    conds = [hcat == 0, hcat == 1, hcat == 2, hcat == 3, hcat == 4]
    rr = np.select(conds, [vmax, mid, vmin, vmin, mid], vmax)
    gg = np.select(conds, [mid, vmax, vmax, mid, vmin], vmin)
    bb = np.select(conds, [vmin, vmin, mid, vmax, vmax], mid)
    # adjust_hue converts back without saturate=True; the values stay in [0, 1] anyway
    return to_uint8(np.stack([rr, gg, bb], axis=-1))


def adjust_jpeg_quality(image: np.ndarray, quality: int) -> np.ndarray:
    """TF's adjust_jpeg_quality: libjpeg encode at `quality` with 4:2:0 chroma (OpenCV's encoder
    gives TF's bytes), then decode with the fast integer DCT and fancy upsampling, as TF does."""
    import cv2
    import simplejpeg

    q = int(min(max(quality, 0), 100))
    img = np.ascontiguousarray(image)
    grey = img.shape[2] == 1
    ok, buf = cv2.imencode(".jpg", img if grey else img[:, :, ::-1],
                           [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])
    if not ok:
        raise ValueError("JPEG encoding failed")
    out = simplejpeg.decode_jpeg(buf.tobytes(), colorspace="GRAY" if grey else "RGB", fastdct=True)
    return out.reshape(img.shape)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`tf.image.resize(bilinear)` (half-pixel centres, no antialias), rounded back to uint8."""
    if image.shape[:2] == (height, width):
        return image.copy()
    import cv2

    out = cv2.resize(image.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    out = out.reshape(height, width, image.shape[2])
    np.rint(out, out=out)  # in place: fresh full-size temporaries cost more than the rounding itself
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def crop(image: np.ndarray, box: list[int], resize: bool) -> np.ndarray:
    y0, x0, y1, x1 = box
    out = image[y0:y1, x0:x1]
    return resize_bilinear(out, image.shape[0], image.shape[1]) if resize else out.copy()


def central_box(height: int, width: int, fraction: float) -> list[int]:
    """TF's central_crop box: start = int((n − n·fraction) / 2), size = n − 2·start."""
    if fraction >= 1.0:
        return [0, 0, height, width]
    top = int((float(height) - float(height) * fraction) / 2)
    left = int((float(width) - float(width) * fraction) / 2)
    return [top, left, height - top, width - left]


# -- the ops: TF names, arguments, draws ----------------------------------------------------------
Sampler = Callable[[dict[str, Any], np.random.Generator, tuple[int, ...]], dict[str, Any]]
Kernel = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


@dataclass(frozen=True)
class Op:
    name: str
    doc: str
    schema: tuple[Param, ...]
    sample: Sampler
    apply: Kernel
    check: Callable[[dict[str, Any], str], None] | None = None


def _lower_upper(args: dict[str, Any], path: str) -> None:
    if args["upper"] <= args["lower"]:
        raise ConfigError(f"{path}.upper", f"{args['upper']!r} must be > lower ({args['lower']!r}), as TF requires")


def _jpeg_range(args: dict[str, Any], path: str) -> None:
    if args["min_jpeg_quality"] >= args["max_jpeg_quality"]:
        raise ConfigError(f"{path}.max_jpeg_quality",
                          f"{args['max_jpeg_quality']!r} must be > min_jpeg_quality ({args['min_jpeg_quality']!r}), as TF requires")


def _crop_size(value: Any, path: str) -> Any:
    """random_crop size: a fraction of (H, W) in (0, 1], or pixels [h, w] (TF's [h, w, c] also accepted)."""
    if isinstance(value, (list, tuple)):
        if len(value) not in (2, 3) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            raise ConfigError(path, f"{value!r} is not accepted; accepted: a fraction in (0, 1] or pixels [h, w] "
                                    "(or TF's [h, w, channels]) of integers >= 1")
        return [int(v) for v in value]
    try:
        return number(0, 1, lo_open=True)(value, path)
    except ConfigError:
        raise ConfigError(path, f"{value!r} is not accepted; accepted: a fraction in (0, 1] or pixels [h, w] "
                                "(or TF's [h, w, channels])") from None


def _sample_crop(args: dict[str, Any], rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    h, w = shape[:2]
    size = args["size"]
    if isinstance(size, list):
        ch, cw = min(size[0], h), min(size[1], w)  # a crop larger than the image keeps that whole side
    else:
        ch, cw = max(1, int(round(h * size))), max(1, int(round(w * size)))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return {"box": [y0, x0, y0 + ch, x0 + cw]}


def _sample_central(args: dict[str, Any], rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    frac = args["central_fraction"]
    f = float(rng.uniform(frac[0], frac[1])) if isinstance(frac, list) else float(frac)
    return {"central_fraction": f, "box": central_box(shape[0], shape[1], f)}


_P = Param("p", "float in [0, 1]", 1.0, "probability that the op runs (augexport's addition)", number(0, 1))
_RESIZE = Param("resize", "bool", True, "resize the crop back to the input size (tf.image.resize, bilinear)", boolean)
_FRACTION = one_of(number(0, 1, lo_open=True), pair(0, 1), accepted="a number in (0, 1] or a range [lo, hi] inside (0, 1]")


def _fraction_range(args: dict[str, Any], path: str) -> None:
    frac = args["central_fraction"]
    if isinstance(frac, list) and frac[0] <= 0:
        raise ConfigError(f"{path}.central_fraction", f"{frac!r}: the range must lie inside (0, 1]")


def _flip(axis: int) -> Kernel:
    return lambda img, prm: np.flip(img, axis=axis).copy() if prm["flip"] else img.copy()


OPS: dict[str, Op] = {op.name: op for op in (
    Op("random_brightness", "x + delta on [0, 1] floats, delta ~ U[-max_delta, max_delta)",
       (Param("max_delta", "float >= 0", 0.2, "largest |delta| (on the [0, 1] scale)", number(0, None)), _P),
       lambda a, rng, s: {"delta": float(rng.uniform(-a["max_delta"], a["max_delta"]))},
       lambda img, prm: adjust_brightness(img, prm["delta"])),
    Op("random_contrast", "(x − channel mean) · factor + mean, factor ~ U[lower, upper)",
       (Param("lower", "float >= 0", 0.8, "smallest factor", number(0, None)),
        Param("upper", "float > lower", 1.2, "largest factor (exclusive)", number(0, None)), _P),
       lambda a, rng, s: {"factor": float(rng.uniform(a["lower"], a["upper"]))},
       lambda img, prm: adjust_contrast(img, prm["factor"]), _lower_upper),
    Op("random_saturation", "HSV saturation · factor, factor ~ U[lower, upper)",
       (Param("lower", "float >= 0", 0.8, "smallest factor", number(0, None)),
        Param("upper", "float > lower", 1.2, "largest factor (exclusive)", number(0, None)), _P),
       lambda a, rng, s: {"factor": float(rng.uniform(a["lower"], a["upper"]))},
       lambda img, prm: adjust_saturation(img, prm["factor"]), _lower_upper),
    Op("random_hue", "HSV hue rotated by delta (in turns), delta ~ U[-max_delta, max_delta)",
       (Param("max_delta", "float in [0, 0.5]", 0.05, "largest |delta| in turns of the hue circle", number(0, 0.5)), _P),
       lambda a, rng, s: {"delta": float(rng.uniform(-a["max_delta"], a["max_delta"]))},
       lambda img, prm: adjust_hue(img, prm["delta"])),
    Op("random_flip_left_right", "mirror left-right with probability 1/2 (TF's draw)", (_P,),
       lambda a, rng, s: {"flip": bool(rng.random() < 0.5)}, _flip(1)),
    Op("random_flip_up_down", "mirror up-down with probability 1/2 (TF's draw)", (_P,),
       lambda a, rng, s: {"flip": bool(rng.random() < 0.5)}, _flip(0)),
    Op("random_jpeg_quality", "JPEG encode/decode at quality ~ U{min, ..., max − 1}",
       (Param("min_jpeg_quality", "int in [0, 100]", 50, "lowest quality", number(0, 100, integer=True)),
        Param("max_jpeg_quality", "int in [0, 100]", 95, "highest quality (exclusive, as in TF)", number(0, 100, integer=True)), _P),
       lambda a, rng, s: {"quality": int(rng.integers(a["min_jpeg_quality"], a["max_jpeg_quality"]))},
       lambda img, prm: adjust_jpeg_quality(img, prm["quality"]), _jpeg_range),
    Op("random_crop", "uniform crop of `size`, resized back to the input size unless resize: false",
       (Param("size", "fraction or [h, w]", 0.875, "crop size: fraction of (H, W) in (0, 1], or pixels [h, w]", _crop_size),
        _RESIZE, _P),
       _sample_crop, lambda img, prm: crop(img, prm["box"], prm["resize"])),
    Op("central_crop", "TF's central_crop; the fraction may be a range [lo, hi) drawn per copy",
       (Param("central_fraction", "float or [lo, hi]", 0.875, "kept fraction of each side, in (0, 1]", _FRACTION),
        _RESIZE, _P),
       _sample_central, lambda img, prm: crop(img, prm["box"], prm["resize"]), _fraction_range),
)}


@register
class TfImage(Stage):
    """A list of tf.image ops applied in order: `- random_brightness: {max_delta: 0.2}`."""

    name = "tf_image"
    doc = "tf.image random ops with TF's names, arguments and formulas (numpy; no TF in workers)."

    @classmethod
    def from_spec(cls, spec: Any, path: str) -> Stage:
        if not isinstance(spec, list) or not spec:
            raise ConfigError(path, f"expected a non-empty list of ops like [{{random_brightness: {{max_delta: 0.2}}}}], got {spec!r}")
        ops = []
        for where, name, args in one_key_items(spec, path, "op"):
            if name not in OPS:
                raise ConfigError(where, f"unknown op {name!r}; accepted: {', '.join(OPS)}{close_matches(str(name), OPS)}")
            op = OPS[name]
            checked = validate_mapping(args, op.schema, f"{where}.{name}")
            if op.check is not None:
                op.check(checked, f"{where}.{name}")
            ops.append({"op": name, **checked})
        return cls({"ops": ops})

    def to_spec(self) -> Any:
        return [{o["op"]: {k: v for k, v in o.items() if k != "op"}} for o in self.config["ops"]]

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        drawn = []
        for o in self.config["ops"]:
            op = OPS[o["op"]]
            if o["p"] < 1.0 and not rng.random() < o["p"]:
                drawn.append({"op": op.name, "applied": False})
                continue
            params = op.sample(o, rng, shape)
            if "resize" in o:
                params["resize"] = o["resize"]
            drawn.append({"op": op.name, **params})
            if "box" in params and not params["resize"]:
                y0, x0, y1, x1 = params["box"]
                shape = (y1 - y0, x1 - x0, *shape[2:])  # later ops see the cropped size
        return {"ops": drawn}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        out = image
        for prm in params["ops"]:
            if prm.get("applied", True) is False:
                continue
            out = OPS[prm["op"]].apply(out, prm)
        return out if out is not image else image.copy()

    @classmethod
    def ops_rows(cls) -> list[tuple[str, str, str, str]]:
        rows: list[tuple[str, str, str, str]] = []
        for op in OPS.values():
            rows.append(("", op.name, "op", op.doc))
            rows.extend((op.name, p.name, p.kind, f"{p.default!r}  {p.doc}") for p in op.schema)
        return rows
