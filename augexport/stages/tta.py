"""TTA variant stages and their pure kernels. `augexport tta --variants` (see `augexport.tta`)
turns its vocabulary into one of these stages per variant, and the copy plan renders variant k as
copy k through the same stage loop as augmented copies. The stages are deterministic: `sample`
only computes what depends on the image's shape (a crop box, a shift in pixels) and draws nothing.
Each records `{"stage": "tta", "variant": NAME, "kind": KIND, ...}` in the record's params.

Geometry conventions (pixel centres at integer coordinates, rows down, columns right):
  rot90 = `np.rot90(x, 1)` (counter-clockwise, like `tf.image.rot90`); transpose swaps rows and
  columns; transverse is the anti-diagonal flip (rot180 of transpose).
  scale:F zooms about the centre c = ((H-1)/2, (W-1)/2) keeping the size:
    out[p] = bilinear(in, c + (p - c) / F), coordinates clamped to the image (edge replicate).
  shift:DY,DX moves content DY rows down and DX columns right: out[y, x] = in[clamp(y-DY), clamp(x-DX)].
  brightness:F is PIL `ImageEnhance.Brightness(F)` (= Keras `brightness_range`): trunc(clip(x·F)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigError, DecodeError
from ..registry import Stage, register
from ..spec import Param, boolean, choice, number

DIHEDRAL = ("identity", "rot90", "rot180", "rot270", "hflip", "vflip", "transpose", "transverse")
INVERSE = {"identity": "identity", "rot90": "rot270", "rot180": "rot180", "rot270": "rot90", "hflip": "hflip",
           "vflip": "vflip", "transpose": "transpose", "transverse": "transverse"}
CORNERS = ("tl", "tr", "bl", "br", "c")


class VariantError(DecodeError):
    """A variant that cannot apply to one image (a crop larger than it): that image is skipped."""


# -- kernels: arrays and parameters in, a new array out -----------------------------------------
def dihedral(image: np.ndarray, op: str) -> np.ndarray:
    """One of the 8 symmetries of the square, on the first two axes (any dtype, any channels)."""
    if op == "identity":
        out = image
    elif op == "hflip":
        out = image[:, ::-1]
    elif op == "vflip":
        out = image[::-1]
    elif op in ("rot90", "rot180", "rot270"):
        out = np.rot90(image, {"rot90": 1, "rot180": 2, "rot270": 3}[op], axes=(0, 1))
    elif op == "transpose":
        out = np.swapaxes(image, 0, 1)
    elif op == "transverse":
        out = np.swapaxes(image, 0, 1)[::-1, ::-1]
    else:
        raise ValueError(f"unknown dihedral op {op!r}")
    return np.array(out, copy=True, order="C")


def crop_box(height: int, width: int, size: list[Any], corner: str) -> list[int]:
    """[y0, x0, y1, x1] of a crop at a corner (torchvision FiveCrop placement, centre rounded)."""
    kind, a, b = size
    ch, cw = (a, b) if kind == "px" else (max(1, round(a * height)), max(1, round(a * width)))
    if ch > height or cw > width:
        raise VariantError(f"crop of {ch}x{cw} is larger than the {height}x{width} image")
    y0, x0 = {"tl": (0, 0), "tr": (0, width - cw), "bl": (height - ch, 0), "br": (height - ch, width - cw),
              "c": (int(round((height - ch) / 2.0)), int(round((width - cw) / 2.0)))}[corner]
    return [y0, x0, y0 + ch, x0 + cw]


def crop(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    y0, x0, y1, x1 = box
    return image[y0:y1, x0:x1].copy()


def zoom(image: np.ndarray, factor: float) -> np.ndarray:
    """Centred zoom keeping the size (see module doc); exact float64 bilinear, edges replicated."""
    h, w = image.shape[:2]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    ys = np.clip(cy + (np.arange(h) - cy) / factor, 0, h - 1)
    xs = np.clip(cx + (np.arange(w) - cx) / factor, 0, w - 1)
    y0 = np.floor(ys).astype(np.intp)
    x0 = np.floor(xs).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    src = image.astype(np.float64).reshape(h, w, -1)
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    out = (top * (1 - fy) + bottom * fy).reshape(image.shape)
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(image.dtype)


def shift(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Integer translation, vacated pixels take the nearest edge value (Keras `fill_mode='nearest'`)."""
    h, w = image.shape[:2]
    rows = np.clip(np.arange(h) - dy, 0, h - 1)
    cols = np.clip(np.arange(w) - dx, 0, w - 1)
    return image[rows][:, cols]


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """PIL `ImageEnhance.Brightness(factor)`: blend with black, float32 maths, truncated to uint8."""
    scaled = image.astype(np.float32) * np.float32(factor)
    return np.clip(scaled, 0, 255).astype(np.uint8)



def invert(prediction: np.ndarray, variant: dict[str, Any]) -> np.ndarray:
    """Map a dense prediction (H', W', ...) of a variant back to the source frame.

    Exact for dihedral and photometric variants; scale/shift lose what left the frame."""
    if not isinstance(variant, dict):
        raise TypeError(f"variant must be the manifest's entry (splits.SPLIT.tta.variants[k], a dict with kind, "
                        f"params and invertible), got {variant!r}")
    kind, p = variant["kind"], variant["params"]
    if not variant.get("invertible"):
        raise ValueError(f"variant {variant['name']!r} is not invertible")
    if kind == "dihedral":
        return dihedral(prediction, INVERSE[p["op"]])
    if kind == "brightness":
        return prediction.copy()
    if kind == "scale":
        return zoom(prediction, 1.0 / p["factor"])
    if kind == "shift":
        unit, a, b = p["offset"]
        h, w = prediction.shape[:2]
        dy, dx = (a, b) if unit == "px" else (round(a * h), round(b * w))
        return shift(prediction, -dy, -dx)
    raise ValueError(f"variant {variant['name']!r} has no inverse")


# -- the stages ------------------------------------------------------------------------------
def _unit_pair(value: Any, path: str, *, integer_px: bool, fraction: tuple[float, float]) -> list[Any]:
    """["px", a, b] (integer pixels) or ["frac", a, b] (fractions inside `fraction`)."""
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and value[0] in ("px", "frac")
    nums = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value[1:])
    if nums and value[0] == "px":
        ok = all(isinstance(v, int) for v in value[1:]) and (not integer_px or min(value[1:]) >= 1)
    elif nums:
        ok = all(fraction[0] < v <= fraction[1] or (fraction[0] < 0 and abs(v) < 1) for v in value[1:])
    if not (ok and nums):
        raise ConfigError(path, f"{value!r} is not accepted; accepted: [px, A, B] in pixels or [frac, A, B] as "
                                "fractions of the height and width")
    return list(value)


def _size(value: Any, path: str) -> list[Any]:
    return _unit_pair(value, path, integer_px=True, fraction=(0.0, 1.0))


def _offset(value: Any, path: str) -> list[Any]:
    return _unit_pair(value, path, integer_px=False, fraction=(-1.0, 1.0))


def _variant_param(doc: str) -> Param:
    return Param("variant", "str", None, f"name recorded in params (default: {doc})",
                 lambda v, path: v if v is None or isinstance(v, str) else _bad_name(v, path))


def _bad_name(value: Any, path: str) -> str:
    raise ConfigError(path, f"{value!r} is not accepted; accepted: a variant name (text)")


class TtaStage(Stage):
    """A deterministic TTA variant; records itself flat as `{"stage": "tta", "variant", "kind", ...}`."""

    kind: ClassVar[str] = ""

    def variant_name(self) -> str:
        raise NotImplementedError

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        name = self.config.get("variant") or self.variant_name()
        return {"stage": "tta", "variant": name, "kind": self.kind, **params}


def number_name(x: float) -> str:
    """A number as a variant name shows it: `:g` (1.1, 0.5, 3), unless that rounds it, so two
    different factors never share a name (1.2 and 1.2000001)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(float(x))


@register
class TtaDihedral(TtaStage):
    name, kind = "tta_dihedral", "dihedral"
    doc = "TTA: one of the 8 symmetries of the square (identity, rot90/180/270, hflip, vflip, transpose, transverse)."
    schema = (Param("op", "|".join(DIHEDRAL), "identity", "the symmetry", choice(*DIHEDRAL)),
              _variant_param("the op"))

    def variant_name(self) -> str:
        return str(self.config["op"])

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return dihedral(image, self.config["op"])


@register
class TtaCrop(TtaStage):
    name, kind = "tta_crop", "crop"
    doc = "TTA: a crop at a corner or the centre (torchvision FiveCrop placement), optionally mirrored."
    schema = (Param("corner", "|".join(CORNERS), "c", "tl, tr, bl, br or c (centre)", choice(*CORNERS)),
              Param("size", "[px, h, w] | [frac, f, f]", ["frac", 0.875, 0.875], "crop size", _size),
              Param("hflip", "bool", False, "mirror the crop left-right", boolean),
              _variant_param("crop_<corner>[_hflip]"))

    def variant_name(self) -> str:
        return f"crop_{self.config['corner']}" + ("_hflip" if self.config["hflip"] else "")

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"box": crop_box(shape[0], shape[1], self.config["size"], self.config["corner"]),
                "hflip": self.config["hflip"]}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        out = crop(image, params["box"])
        return dihedral(out, "hflip") if params["hflip"] else out


@register
class TtaScale(TtaStage):
    name, kind = "tta_scale", "scale"
    doc = "TTA: centred zoom by `factor` keeping the size (exact bilinear, edges replicated)."
    schema = (Param("factor", "float > 0", 1.0, "zoom factor (> 1 zooms in)", number(0, None, lo_open=True)),
              _variant_param("scale_<factor>"))

    def variant_name(self) -> str:
        return f"scale_{number_name(self.config['factor'])}"

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"factor": self.config["factor"]}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return zoom(image, params["factor"])


@register
class TtaShift(TtaStage):
    name, kind = "tta_shift", "shift"
    doc = "TTA: integer translation by (dy, dx) pixels or fractions of (H, W); vacated pixels take the nearest edge."
    schema = (Param("offset", "[px, dy, dx] | [frac, fy, fx]", ["px", 0, 0], "rows down, columns right", _offset),
              _variant_param("shift_<dy>_<dx>"))

    def variant_name(self) -> str:
        _, a, b = self.config["offset"]
        return f"shift_{number_name(a)}_{number_name(b)}"

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        unit, a, b = self.config["offset"]
        dy, dx = (a, b) if unit == "px" else (round(a * shape[0]), round(b * shape[1]))
        if abs(dy) >= shape[0] or abs(dx) >= shape[1]:  # every pixel would be one edge row or column smeared
            raise VariantError(f"a shift of {dy},{dx} pixels moves the whole {shape[0]}x{shape[1]} image out of "
                               f"the frame; accepted: |DY| < {shape[0]}, |DX| < {shape[1]}")
        return {"dy": dy, "dx": dx}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return shift(image, params["dy"], params["dx"])


@register
class TtaBrightness(TtaStage):
    name, kind = "tta_brightness", "brightness"
    doc = "TTA: PIL ImageEnhance.Brightness(factor) (= Keras brightness_range): trunc(clip(x·factor))."
    schema = (Param("factor", "float > 0", 1.0, "brightness factor", number(0, None, lo_open=True)),
              _variant_param("brightness_<factor>"))

    def variant_name(self) -> str:
        return f"brightness_{number_name(self.config['factor'])}"

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"factor": self.config["factor"]}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return brightness(image, params["factor"])


VARIANT_STAGES: dict[str, type[TtaStage]] = {cls.kind: cls for cls in (TtaDihedral, TtaCrop, TtaScale, TtaShift, TtaBrightness)}


def variant_stage(entry: dict[str, Any]) -> TtaStage:
    """The stage that renders one deterministic variant entry (from `augexport.tta.parse_variants`)."""
    cls = VARIANT_STAGES[entry["kind"]]
    return cls.from_spec({**entry["params"], "variant": entry["name"]}, f"variants[{entry.get('index', 0)}]")
