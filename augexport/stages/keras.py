"""The `keras` stage: tf.keras `ImageDataGenerator` augmentation, reproduced on uint8 with OpenCV.

`sample` mirrors `ImageDataGenerator.get_random_transform` draw for draw (same distributions, same
keys), using the example's generator; `apply` replays `apply_transform` with one `cv2.warpAffine`
and one lookup table. Keras' geometry, written in (x = column, y = row) coordinates: the source
pixel of output pixel p is

    src = C · R(theta) · T(tx, ty) · Sh(shear) · Z(zx, zy) · C⁻¹ · F · p

with R = [[cos, -sin], [sin, cos]], Sh = [[1, -sin s], [0, cos s]], Z = diag(zx, zy), C the shift
to the centre and F the flips (applied after the resample in Keras, folded into the matrix here).
Keras' quirks, kept by default: tx is drawn from `height_shift_range`·H yet moves columns (ty
likewise from width), and C = (H/2 - 0.5, W/2 - 0.5) is used as (x, y), i.e. transposed on
non-square images. `fix_axes: true` draws tx from width (·W), ty from height (·H) and centres at
((W-1)/2, (H-1)/2). scipy's fill modes: `nearest` = BORDER_REPLICATE, `reflect` = BORDER_REFLECT;
`constant` cuts off sharply outside [0, n-1] (no blend with cval), so the image is warped with
replicate and the outside set to cval; `wrap` has period n-1 (first and last samples overlap), so
the source coordinates are wrapped by hand and resampled with `cv2.remap`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import fused_warp
from ..allocator import buffers_reused
from ..errors import ConfigError
from ..registry import Stage, register
from ..spec import Param, boolean, choice, is_number, number, pair

FILL_MODES = ("constant", "nearest", "reflect", "wrap")
# OpenCV is imported lazily (in the kernels) so that `augexport --help` stays fast.
_BORDERS = {"nearest": "BORDER_REPLICATE", "reflect": "BORDER_REFLECT", "constant": "BORDER_REPLICATE",
            "wrap": "BORDER_REPLICATE"}
_INTERP = {0: "INTER_NEAREST", 1: "INTER_LINEAR"}
CV_MAX_SIDE = 32767  # OpenCV's remap holds coordinates in shorts: a longer side goes through scipy


# -- validation ------------------------------------------------------------------------------
# Keras takes any size, but past these a value means nothing more (an angle past a full turn, a
# shift past any image, a zoom or brightness that leaves one colour) and past float range the
# draws overflow (numpy's uniform(-r, r) raises beyond ~9e307, integers beyond int64); bounded
# here so such a value is a config error naming its key, not a crash of the dry run.
MAX_DEGREES = 360
MAX_SHIFT = 100_000  # pixels
MAX_FACTOR = 1000  # zoom and brightness factors


def shift_range(value: Any, path: str) -> Any:
    """Keras' shift ranges keep their type: int = integer pixels, float = fraction (< 1) or pixels,
    list = choices (each with a random sign)."""
    accepted = (f"a number in [0, {MAX_SHIFT}] (float < 1: fraction of the size; int: integer pixels) or a "
                f"non-empty list of numbers in [-{MAX_SHIFT}, {MAX_SHIFT}]")
    if is_number(value) or (isinstance(value, int) and not isinstance(value, bool)):  # an int past a float too
        if not 0 <= value <= MAX_SHIFT:
            raise ConfigError(path, f"{value!r} is out of range; accepted: {accepted}")
        return value
    if isinstance(value, (list, tuple)) and value and all(is_number(v) for v in value):
        if any(abs(v) > MAX_SHIFT for v in value):
            raise ConfigError(path, f"{list(value)!r} is out of range; accepted: {accepted}")
        return list(value)
    raise ConfigError(path, f"{value!r} is not accepted; accepted: {accepted}")


def zoom_range(value: Any, path: str) -> Any:
    """A float z (Keras: [1 - z, 1 + z]) or a [low, high] pair."""
    if is_number(value):
        return number(0, 1, hi_open=True)(value, path)
    if isinstance(value, (list, tuple)):
        return pair(0, MAX_FACTOR)(value, path)
    raise ConfigError(path, f"{value!r} is not accepted; accepted: a number in [0, 1) or a list [low, high] of "
                            f"numbers in [0, {MAX_FACTOR}]")


def brightness_range(value: Any, path: str) -> Any:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)):
        raise ConfigError(path, f"{value!r} is not accepted; accepted: null or a list [low, high] of numbers in "
                                f"[0, {MAX_FACTOR}]")
    return pair(0, MAX_FACTOR)(value, path)


def zoom_bounds(zoom: Any) -> tuple[float, float]:
    if is_number(zoom):
        return 1.0 - zoom, 1.0 + zoom
    return float(zoom[0]), float(zoom[1])


# -- sampling (mirrors ImageDataGenerator.get_random_transform) ---------------------------------
def draw_shift(rng: np.random.Generator, spec: Any, size: int) -> float:
    """Keras: `choice(range) * choice([-1, 1])` for an int or list, else `uniform(-r, r)`;
    then `* size` when every value is < 1."""
    if not spec:
        return 0.0
    if isinstance(spec, list):
        shift = float(spec[int(rng.integers(0, len(spec)))]) * (-1.0 if rng.integers(0, 2) == 0 else 1.0)
    elif isinstance(spec, int):
        shift = float(rng.integers(0, spec)) * (-1.0 if rng.integers(0, 2) == 0 else 1.0)
    else:
        shift = float(rng.uniform(-spec, spec))
    if max(spec if isinstance(spec, list) else [spec]) < 1:
        shift *= size
    return shift


def sample_transform(config: dict[str, Any], rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    h, w = int(shape[0]), int(shape[1])
    rot = config["rotation_range"]
    theta = float(rng.uniform(-rot, rot)) if rot else 0.0
    if config["fix_axes"]:
        tx = draw_shift(rng, config["width_shift_range"], w)
        ty = draw_shift(rng, config["height_shift_range"], h)
    else:
        tx = draw_shift(rng, config["height_shift_range"], h)
        ty = draw_shift(rng, config["width_shift_range"], w)
    shear_r = config["shear_range"]
    shear = float(rng.uniform(-shear_r, shear_r)) if shear_r else 0.0
    lo, hi = zoom_bounds(config["zoom_range"])
    zx, zy = (1.0, 1.0) if lo == 1 and hi == 1 else (float(z) for z in rng.uniform(lo, hi, 2))
    flip_h = bool(rng.random() < 0.5) and config["horizontal_flip"]
    flip_v = bool(rng.random() < 0.5) and config["vertical_flip"]
    cs = config["channel_shift_range"]
    channel = float(rng.uniform(-cs, cs)) if cs != 0 else None
    br = config["brightness_range"]
    brightness = float(rng.uniform(br[0], br[1])) if br is not None else None
    return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
            "flip_horizontal": flip_h, "flip_vertical": flip_v,
            "channel_shift_intensity": channel, "brightness": brightness}


# -- the kernel ----------------------------------------------------------------------------------
def affine_matrix(params: dict[str, Any], h: int, w: int, fix_axes: bool = False) -> np.ndarray | None:
    """3x3 map from output (x, y) to source (x, y) before flips, or None when Keras skips the resample."""
    theta, tx, ty = params.get("theta", 0), params.get("tx", 0), params.get("ty", 0)
    shear, zx, zy = params.get("shear", 0), params.get("zx", 1), params.get("zy", 1)
    m = np.eye(3)
    used = False
    if theta != 0:
        t = np.deg2rad(theta)
        m = m @ np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
        used = True
    if tx != 0 or ty != 0:
        m = m @ np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], dtype=np.float64)
        used = True
    if shear != 0:
        s = np.deg2rad(shear)
        m = m @ np.array([[1, -np.sin(s), 0], [0, np.cos(s), 0], [0, 0, 1]])
        used = True
    if zx != 1 or zy != 1:
        m = m @ np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]], dtype=np.float64)
        used = True
    if not used:
        return None
    cx, cy = ((w - 1) / 2, (h - 1) / 2) if fix_axes else (h / 2 - 0.5, w / 2 - 0.5)
    offset = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]])
    reset = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    return offset @ m @ reset


def flip_matrix(h: int, w: int, flip_h: bool, flip_v: bool) -> np.ndarray:
    return np.array([[-1 if flip_h else 1, 0, w - 1 if flip_h else 0],
                     [0, -1 if flip_v else 1, h - 1 if flip_v else 0], [0, 0, 1]], dtype=np.float64)


def inside_columns(m: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """scipy 'constant': per output row, the first and last column whose source lies inside
    [0, W-1] x [0, H-1] (int16; first > last when none). The map is affine, so the inside of a row
    is one interval of x: O(H) work instead of a test per pixel."""
    ys = np.arange(h, dtype=np.float64)
    lo = np.full(h, -np.inf)
    hi = np.full(h, np.inf)
    for row, size in ((m[0], w), (m[1], h)):
        a, c = row[0], row[1] * ys + row[2]  # source coordinate = a*x + c
        if abs(a) < 1e-12:
            inside = (c >= -1e-9) & (c <= size - 1 + 1e-9)
            lo = np.where(inside, lo, np.inf)
            continue
        x0, x1 = (-c) / a, (size - 1 - c) / a
        lo = np.maximum(lo, np.minimum(x0, x1) - 1e-9)
        hi = np.minimum(hi, np.maximum(x0, x1) + 1e-9)
    first = np.clip(np.ceil(lo), -1, w + 1).astype(np.int16)
    last = np.clip(np.floor(hi), -1, w + 1).astype(np.int16)
    return first, last


def _constant_outside(out: np.ndarray, m: np.ndarray, cval: float) -> np.ndarray:
    """scipy 'constant': output pixels whose source lies outside [0, W-1] x [0, H-1] become cval."""
    import cv2

    h, w = out.shape[:2]
    first, last = inside_columns(m, h, w)
    # int16 compares and cv2.copyTo keep this to ~1 ms on 375x500 (numpy boolean fills and OpenCV's
    # masked add/subtract were measured slower)
    cols = np.arange(w, dtype=np.int16)
    outside = ((cols < first[:, None]) | (cols > last[:, None])).view(np.uint8)
    return cv2.copyTo(np.full_like(out, cval), outside, out)


def _wrap_remap(image: np.ndarray, m: np.ndarray, interp: int) -> np.ndarray:
    """scipy 'wrap': coordinates outside [0, n-1] are taken modulo n-1."""
    import cv2

    h, w = image.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    maps = []
    for row, size in ((m[0], w), (m[1], h)):
        coord = np.float32(row[0]) * xs + (np.float32(row[1]) * ys + np.float32(row[2]))
        if size > 1:
            out = (coord < 0) | (coord > size - 1)
            wrapped = np.mod(coord[out], np.float32(size - 1))
            # scipy sends an exact negative multiple of the period to n-1, not to 0
            wrapped[(wrapped == 0) & (coord[out] < 0)] = size - 1
            coord[out] = wrapped
        else:
            coord[:] = 0
        maps.append(coord)
    return cv2.remap(image, maps[0], maps[1], interp, borderMode=cv2.BORDER_REPLICATE)


def _scipy_affine(image: np.ndarray, m: np.ndarray, mode: str, cval: float, order: int) -> np.ndarray:
    """Spline orders 2..5 have no OpenCV equivalent: scipy per channel, as Keras does (float32 in,
    float32 out; uint8 in, rounded uint8 out)."""
    import scipy.ndimage  # only for rare orders

    rc = m[[1, 0]][:, [1, 0, 2]]  # (x, y) -> (row, col)
    chans = [scipy.ndimage.affine_transform(image[..., c].astype(np.float32), rc[:, :2], rc[:, 2],
                                            order=order, mode=mode, cval=cval) for c in range(image.shape[2])]
    out = np.stack(chans, axis=-1)
    return out if image.dtype == np.float32 else np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _warp_affine(src: np.ndarray, m: np.ndarray, interp: int, border: int) -> np.ndarray:
    """cv2.warpAffine's bytes. A bilinear warp of RGB uint8 with a replicated border runs the fused
    kernel (`fused_warp`) where it is built; otherwise RGB uint8 goes through RGBA where buffers
    are reused (worker processes, the CLI): OpenCV's 4-channel warp is vectorised better, and with
    the two conversions it is ~10% faster, each channel interpolated exactly as before. Where every
    temporary is a fresh mmap (a library caller's process), the two extra buffers' page faults cost
    more than that (1.8 ms against 1.2 ms per 500x375 image here), so the warp is direct."""
    import cv2

    h, w = src.shape[:2]
    if interp == cv2.INTER_LINEAR and border == cv2.BORDER_REPLICATE:
        out = fused_warp.warp_rgb(src, m, (w, h), fused_warp.REPLICATE)
        if out is not None:
            return out
    flags = interp | cv2.WARP_INVERSE_MAP
    if src.ndim == 3 and src.shape[2] == 3 and src.dtype == np.uint8 and buffers_reused():
        out = cv2.warpAffine(cv2.cvtColor(src, cv2.COLOR_RGB2RGBA), m[:2], (w, h), flags=flags, borderMode=border)
        return cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
    return cv2.warpAffine(src, m[:2], (w, h), flags=flags, borderMode=border)


def warp(image: np.ndarray, m: np.ndarray, fill_mode: str, cval: float, order: int) -> np.ndarray:
    """Resample with `m` (output (x, y) -> source (x, y)) under scipy's fill-mode semantics; uint8
    or float32 in, the same dtype out."""
    import cv2

    h, w = image.shape[:2]
    if order not in _INTERP or max(h, w) >= CV_MAX_SIDE:  # scipy: what Keras itself calls
        return _scipy_affine(image, m, fill_mode, cval, order)
    squeeze = image.ndim == 3 and image.shape[2] == 1
    src = image[..., 0] if squeeze else image
    if fill_mode == "wrap":
        out = _wrap_remap(src, m, getattr(cv2, _INTERP[order]))
    else:
        out = _warp_affine(src, m, getattr(cv2, _INTERP[order]), getattr(cv2, _BORDERS[fill_mode]))
        if fill_mode == "constant":
            fill = cval if out.dtype == np.float32 else int(np.clip(np.rint(cval), 0, 255))
            out = _constant_outside(out, m, fill)
    return out[..., None] if squeeze else out


def intensity_lut(lo: int, hi: int, channel_shift: float | None, brightness: float | None) -> np.ndarray:
    """Keras' channel shift (x + i clipped to the image's [min, max]) then its brightness (PIL
    ImageEnhance on the array after `astype(uint8)`, i.e. truncation; PIL truncates too), as a LUT."""
    v = np.arange(256, dtype=np.float64)
    if channel_shift is not None:
        v = np.clip(v + channel_shift, lo, hi)
    if brightness is None:
        return np.clip(np.rint(v), 0, 255).astype(np.uint8)
    v = np.trunc(v).astype(np.float32)
    return np.clip(np.trunc(np.float32(brightness) * v), 0, 255).astype(np.uint8)


def _warp_then_brightness(image: np.ndarray, m: np.ndarray, fill_mode: str, cval: float, order: int,
                          shift: float | None, brightness: float) -> np.ndarray:
    """Keras hands PIL's brightness its float warp (and channel shift) truncated by
    `astype('uint8')`; a uint8 warp rounds instead and came out half a level brighter on average.
    So here the warp is float32 and the result truncated, then PIL's part is a table. A spline
    warp (orders 2-5) can overshoot 0..255: Keras' `apply_brightness_shift` then stretches the
    image's min..max onto 0..255 for PIL and maps PIL's levels back, and so does this."""
    x = warp(image.astype(np.float32), m, fill_mode, cval, order)
    if shift is not None:
        x = np.clip(x + np.float32(shift), x.min(), x.max())
    lut = intensity_lut(0, 255, None, brightness)
    lo, hi = x.min(), x.max()
    if lo >= 0 and hi <= 255:
        return np.ascontiguousarray(lut[x.astype(np.uint8)])  # truncation, as astype('uint8')
    y = x - lo
    if y.max() != 0:
        y /= y.max()
    y *= 255
    out = lut[y.astype(np.uint8)].astype(np.float32) / 255 * (hi - lo) + lo
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def fill_before_brightness(cval: float, brightness: float | None) -> float:
    """The constant fill of a uint8 warp that a brightness follows: Keras hands PIL its image as
    astype('uint8'), so a fractional fill in 0..255 is truncated, not rounded."""
    return float(np.trunc(cval)) if brightness is not None and 0 <= cval <= 255 else cval


def _spline_warp_then_shift(image: np.ndarray, m: np.ndarray, fill_mode: str, cval: float, order: int,
                            shift: float) -> np.ndarray:
    """A spline warp (orders 2-5) overshoots 0..255; Keras' channel shift clips to the float warp's
    own min..max, so the shift comes before the overshoot is clipped, as there."""
    x = warp(image.astype(np.float32), m, fill_mode, cval, order)
    x = np.clip(x + np.float32(shift), x.min(), x.max())
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def apply_keras(image: np.ndarray, params: dict[str, Any], *, fill_mode: str = "nearest", cval: float = 0.0,
                order: int = 1, fix_axes: bool = False) -> np.ndarray:
    """Pure kernel: `ImageDataGenerator(fill_mode, cval, interpolation_order).apply_transform` on uint8 HxWxC."""
    h, w = image.shape[:2]
    flip_h, flip_v = bool(params.get("flip_horizontal", False)), bool(params.get("flip_vertical", False))
    shift, bright = params.get("channel_shift_intensity"), params.get("brightness")
    m = affine_matrix(params, h, w, fix_axes)
    out = image
    if m is not None:
        if flip_h or flip_v:
            m = m @ flip_matrix(h, w, flip_h, flip_v)
        if bright is not None and order != 0:  # nearest-neighbour warps are whole levels already
            return _warp_then_brightness(image, m, fill_mode, cval, order, shift, bright)
        if shift is not None and order >= 2:
            return _spline_warp_then_shift(image, m, fill_mode, cval, order, shift)
        out = warp(image, m, fill_mode, fill_before_brightness(cval, bright), order)
    elif flip_h or flip_v:
        out = image[::-1 if flip_v else 1, ::-1 if flip_h else 1]
    if shift is not None or bright is not None:
        lo, hi = (int(out.min()), int(out.max())) if shift is not None else (0, 255)
        lut = intensity_lut(lo, hi, shift, bright)
        out = lut[out]
    if out is not image and not out.flags.c_contiguous:
        out = np.ascontiguousarray(out)
    return out


@register
class KerasStage(Stage):
    name = "keras"
    doc = "tf.keras ImageDataGenerator augmentation with Keras' names, defaults, draws and quirks."
    schema = (
        Param("rotation_range", f"float in [0, {MAX_DEGREES}]", 0, "degrees; theta ~ U(-r, r)",
              number(0, MAX_DEGREES)),
        Param("width_shift_range", "float|int|list", 0.0,
              "float < 1: fraction of width; >= 1: pixels; int: integer pixels in (-n, n); list: choice x random sign; "
              f"at most {MAX_SHIFT} pixels",
              shift_range),
        Param("height_shift_range", "float|int|list", 0.0, "as width_shift_range, for the height", shift_range),
        Param("shear_range", f"float in [0, {MAX_DEGREES}]", 0.0, "shear angle in degrees; U(-s, s)",
              number(0, MAX_DEGREES)),
        Param("zoom_range", "float|[lo, hi]", 0.0,
              f"z in [0, 1): [1-z, 1+z]; or [lo, hi] inside [0, {MAX_FACTOR}]; zx, zy drawn independently", zoom_range),
        Param("channel_shift_range", "float in [0, 255]", 0.0, "one U(-r, r) offset on every channel, clipped to the image's range",
              number(0, 255)),
        Param("brightness_range", "null|[lo, hi]", None, f"PIL brightness factor ~ U(lo, hi), inside [0, {MAX_FACTOR}]",
              brightness_range),
        Param("horizontal_flip", "bool", False, "flip left-right with probability 0.5", boolean),
        Param("vertical_flip", "bool", False, "flip up-down with probability 0.5", boolean),
        Param("fill_mode", "constant|nearest|reflect|wrap", "nearest", "scipy.ndimage fill mode outside the image",
              choice(*FILL_MODES)),
        Param("cval", "float in [0, 255]", 0.0, "fill value for fill_mode constant", number(0, 255)),
        Param("interpolation_order", "int in [0, 5]", 1, "spline order (0 nearest, 1 bilinear: fast; 2..5 via scipy)",
              number(0, 5, integer=True)),
        Param("featurewise_center", "bool", False, "record the dataset's per-channel mean in the manifest", boolean),
        Param("featurewise_std_normalization", "bool", False, "record the per-channel std too (implies the mean)",
              boolean),
        Param("fix_axes", "bool", False, "geometrically correct shifts and centre instead of Keras' quirks", boolean),
    )

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return sample_transform(self.config, rng, shape)

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        c = self.config
        return apply_keras(image, params, fill_mode=c["fill_mode"], cval=c["cval"], order=c["interpolation_order"],
                           fix_axes=c["fix_axes"])

    @property
    def wants_featurewise(self) -> bool:
        return bool(self.config["featurewise_center"] or self.config["featurewise_std_normalization"])
