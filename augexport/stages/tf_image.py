"""`tf_image`: the `tf.image` random ops with TF's names, arguments and formulas, in numpy/OpenCV.

Workers never import TensorFlow, so each op is re-implemented from TF's source and checked against
`tf.image.adjust_*` in the tests, bit for bit. TF's uint8 path is kept exactly: `convert_image_dtype`
to float32 (x · (1/255)), the float op in TF's float32 order, then back with saturation, i.e.
trunc(clip(y · 255.5, 0, 255)).

Speed: an op whose result depends on a value alone (brightness; contrast, given the channel means)
is a 256-entry table. The HSV ops (hue, saturation) run on runs of pixels with every temporary in
one scratch block; the largest and smallest channel of a pixel are uint8 work, only what TF computes
in float is float, and the output channels are picked by hue sextant with masked copies. Each op
costs at most about TF's own CPU kernel (scripts/bench.py, --kernels).

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
#: TF's float32 value of every uint8 level: convert_image_dtype(v) = v · (1/255)
_LEVELS = np.arange(256, dtype=np.float32) * _INV255
#: Pixels per pass of the HSV kernels: the temporaries of one pass stay in L2 and are allocated once.
_RUN = 1 << 16


# -- TF's dtype conversions -----------------------------------------------------------------------
def to_float(image: np.ndarray) -> np.ndarray:
    """`tf.image.convert_image_dtype(uint8 -> float32)`: x · (1/255) in float32."""
    return image.astype(np.float32) * _INV255


def to_uint8(image: np.ndarray) -> np.ndarray:
    """`convert_image_dtype(float32 -> uint8, saturate=True)`: trunc(clip(x · 255.5, 0, 255))."""
    return np.clip(image * np.float32(255.5), 0, 255).astype(np.uint8)


def _apply_lut(image: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 -> uint8 through one 256-entry table per channel (lut: 256 x C), or one for all (256,)."""
    import cv2

    img = np.ascontiguousarray(image)
    if lut.ndim == 1 or img.shape[2] == 1:  # one table: the image as a single-channel plane
        return cv2.LUT(img.reshape(img.shape[0], -1), np.ascontiguousarray(lut.reshape(256))).reshape(img.shape)
    return cv2.LUT(img, np.ascontiguousarray(lut.reshape(256, 1, img.shape[2]))).reshape(img.shape)


# -- pure kernels (uint8 in, uint8 out, input never modified) -------------------------------------
def adjust_brightness(image: np.ndarray, delta: float) -> np.ndarray:
    """x + delta per value, so a 256-entry table of TF's float results."""
    return _apply_lut(image, to_uint8(_LEVELS + np.float32(delta)))


def channel_means(image: np.ndarray) -> np.ndarray:
    """Per-channel float32 means exactly as TF's AdjustContrastv2 kernel takes them: the pixels are
    summed by folding the plane in halves (x[:n/2] + x[n/2:], repeated), then times float32(1/n).
    numpy's own float32 mean rounds differently and is a level off on large images."""
    c = image.shape[2]
    x = np.multiply(image.reshape(-1, c), _INV255)  # TF's float32 values; folded in place below
    n = left = x.shape[0]
    while left > 1:
        right = left // 2
        left -= right  # an odd middle row stays as it is, as in TF
        np.add(x[:right], x[left:left + right], out=x[:right])
    return x[0] * (np.float32(1) / np.float32(n))


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Per-channel mean over H, W: mean + factor · (x − mean) (TF's AdjustContrastv2), as a table
    per channel since the result depends on the value and the channel's mean only."""
    mean = channel_means(image)
    return _apply_lut(image, to_uint8(mean + np.float32(factor) * (_LEVELS[:, None] - mean)))


def _pixel_runs(image: np.ndarray, kernel: Callable[..., None], planes: tuple[int, int, int],
                *args: Any) -> np.ndarray:
    """Run `kernel(pixels, out, scratch, *args)` over runs of _RUN pixels (1 x N x 3 views) of an
    RGB image. `planes` = how many float64, float32 and uint8 scratch planes the kernel uses.

    All scratch comes from ONE allocation per call: separately allocated ~200 KB temporaries are
    given back to the OS by glibc on free and page-faulted in again on the next call, which cost
    more than the arithmetic (3x on 224x224); one block raises glibc's mmap threshold to its own
    size and is reused from the heap."""
    px = np.ascontiguousarray(image).reshape(1, -1, 3)  # one row: OpenCV's masked ops loop per row
    n = px.shape[1]
    run = max(1, min(n, _RUN))
    layout = ((np.float64, planes[0]), (np.float32, planes[1]), (np.uint8, planes[2]))
    block = np.empty(run * sum(np.dtype(dtype).itemsize * count for dtype, count in layout), np.uint8)
    scratch: list[np.ndarray] = []
    at = 0
    for dtype, count in layout:  # widest first, so every plane is aligned
        size = run * np.dtype(dtype).itemsize * count
        scratch.extend(block[at : at + size].view(dtype).reshape(count, 1, run))  # 1 x run planes
        at += size
    out = np.empty_like(px)
    with np.errstate(divide="ignore", invalid="ignore"):  # the kernels patch their 0/0s
        for i in range(0, n, run):
            m = min(run, n - i)
            kernel(px[:, i : i + m], out[:, i : i + m], scratch if m == run else [p[:, :m] for p in scratch], *args)
    return out.reshape(image.shape)


# Output channel roles per hue sextant k (TF's switch in both HSV kernels): 0 = the largest of
# the three values, 1 = the middle one, 2 = the smallest. Row 6 is adjust_saturation's `default:`.
_ROLES = np.array([[0, 1, 2], [1, 0, 2], [2, 0, 1], [2, 1, 0], [1, 2, 0], [0, 2, 1], [2, 2, 2]])
#: k -> one bit per (channel, role in (largest, middle)): bit 2·channel + role
_ROLE_BITS = np.zeros(256, np.uint8)
_ROLE_BITS[:7] = [sum(1 << (2 * ch + role) for ch in range(3) for role in (0, 1) if row[ch] == role)
                  for row in _ROLES]


def _by_sextant(k: np.ndarray, hi: np.ndarray, mid: np.ndarray, lo: np.ndarray, out: np.ndarray,
                chans: list[np.ndarray], bits: np.ndarray, mask: np.ndarray) -> None:
    """out (1 x N x 3) = per pixel the (hi, mid, lo) arrangement of sextant k, TF's switch."""
    import cv2

    cv2.LUT(k, _ROLE_BITS, dst=bits)
    for ch, plane in enumerate(chans):
        plane[...] = lo
        cv2.copyTo(hi, np.bitwise_and(bits, np.uint8(1 << 2 * ch), out=mask), plane)
        cv2.copyTo(mid, np.bitwise_and(bits, np.uint8(2 << 2 * ch), out=mask), plane)
    cv2.merge(chans, dst=out)


def _levels(u8: np.ndarray, out: np.ndarray) -> np.ndarray:
    """TF's float32 value of uint8 levels, into `out` (float32(v) · (1/255), 3x faster than a LUT)."""
    return np.multiply(u8, _INV255, out=out)


def _flip_where_odd(x: np.ndarray, k: np.ndarray, tmp: np.ndarray, mask: np.ndarray) -> None:
    """x = 1 − x where k is odd (in place; a masked copy beats numpy's where= by 10x)."""
    import cv2

    np.subtract(np.float32(1), x, out=tmp)
    cv2.copyTo(tmp, np.bitwise_and(k, np.uint8(1), out=mask), x)


#: adjust_hue's ordering tree, indexed by 4·(r < g) + (b >= min(r, g)) + 2·(b > max(r, g)).
_HUE_CATEGORY = np.zeros(256, np.uint8)
_HUE_CATEGORY[[0, 1, 3, 4, 5, 7]] = [0, 5, 4, 1, 2, 3]


def _hue_category(r: np.ndarray, g: np.ndarray, b: np.ndarray, lo_rg: np.ndarray, hi_rg: np.ndarray,
                  cat: np.ndarray, m1: np.ndarray, m2: np.ndarray) -> None:
    """cat = TF's rgb_to_hv_range h_category, ties falling where its if-tree puts them."""
    import cv2

    np.less(r, g, out=m1.view(bool))
    np.left_shift(m1, 2, out=m1)
    np.greater_equal(b, lo_rg, out=m2.view(bool))
    np.bitwise_or(m1, m2, out=m1)
    np.greater(b, hi_rg, out=m2.view(bool))
    np.left_shift(m2, 1, out=m2)
    np.bitwise_or(m1, m2, out=m1)
    cv2.LUT(m1, _HUE_CATEGORY, dst=cat)


def _hue_run(px: np.ndarray, out: np.ndarray, s: list[np.ndarray], delta: float) -> None:
    """TF's AdjustHue on a run of pixels. The largest and smallest channel keep their values (both
    round-trip through float exactly), so only the middle one is recomputed in float32."""
    import cv2

    fmid, flo, span, hue, tmp = s[:5]
    r, g, b, lo_rg, hi_rg, hi, lo, mid, cat, m1, m2, k, c0, c1, c2, m3 = s[5:]
    cv2.split(px, [r, g, b])
    cv2.min(r, g, dst=lo_rg)
    cv2.max(r, g, dst=hi_rg)
    cv2.max(hi_rg, b, dst=hi)
    cv2.min(lo_rg, b, dst=lo)
    cv2.max(lo_rg, cv2.min(hi_rg, b, dst=mid), dst=mid)
    _hue_category(r, g, b, lo_rg, hi_rg, cat, m1, m2)
    _levels(lo, flo)
    np.subtract(_levels(hi, span), flo, out=span)
    np.subtract(_levels(mid, fmid), flo, out=fmid)
    cv2.patchNaNs(np.divide(fmid, span, out=fmid), 0)  # the ratio; greys: 0/0 -> 0 (any h gives grey)
    _flip_where_odd(fmid, cat, tmp, m1)
    hue[...] = cat
    np.add(hue, fmid, out=hue)  # h = category + ratio, in [0, 6]
    dh = np.float32(delta) * np.float32(6)
    np.add(hue, dh, out=hue)
    if dh < 0:
        np.add(hue, np.float32(6), out=tmp)
        cv2.copyTo(tmp, np.less(hue, 0, out=m1.view(bool)).view(np.uint8), hue)
    np.subtract(hue, np.float32(6), out=tmp)
    cv2.copyTo(tmp, np.greater_equal(hue, 6, out=m1.view(bool)).view(np.uint8), hue)
    k[...] = hue  # truncation: the new sextant
    tmp[...] = k
    np.subtract(hue, tmp, out=hue)
    _flip_where_odd(hue, k, tmp, m1)
    np.multiply(hue, span, out=hue)
    np.add(flo, hue, out=hue)
    np.multiply(hue, np.float32(255.5), out=hue)  # adjust_hue converts back without saturate=True
    m2[...] = hue
    _by_sextant(k, hi, m2, lo, out, [c0, c1, c2], m1, m3)


def adjust_hue(image: np.ndarray, delta: float) -> np.ndarray:
    """TF's AdjustHue kernel: hue h in [0, 6) from the (max, mid, min) ordering, h += 6·delta
    (wrapped), then rebuilt from (h, v_min, v_max); saturation and value are kept. Bit-exact."""
    if image.shape[2] != 3:
        return image.copy()
    return _pixel_runs(image, _hue_run, (0, 5, 16), delta)


#: adjust_saturation's hue offset, added in double precision, by branch code
#: (r == v) + 2·(g == v and r != v): 0 -> b is the max (4/6), 1 -> r (0), 2 -> g (2/6).
_SAT_OFFSET = np.pad(np.array([4.0 / 6.0, 0.0, 2.0 / 6.0]), (0, 253))


def _saturation_hue(s: list[np.ndarray], planes: list[np.ndarray], span: np.ndarray, hh: np.ndarray,
                    tmp: np.ndarray, d64: np.ndarray) -> None:
    """hh = TF's rgb_to_hsv hue in [0, 1): norm · (p − q) + offset, the offset added in double."""
    import cv2

    r, g, b, v8, p8, q8, m1, m2, code = s
    rmax, gmax = m1.view(bool), m2.view(bool)
    np.equal(r, v8, out=rmax)  # TF tests r == v first, then g == v
    np.greater(np.equal(g, v8, out=gmax), rmax, out=gmax)
    p8[...] = r  # (p, q) = (g, b), (b, r) or (r, g) by branch
    q8[...] = g
    cv2.copyTo(b, m2, p8)
    cv2.copyTo(r, m2, q8)
    cv2.copyTo(g, m1, p8)
    cv2.copyTo(b, m1, q8)
    fp, fq = planes
    np.subtract(_levels(p8, fp), _levels(q8, fq), out=fp)
    np.multiply(span, np.float32(6), out=tmp)
    np.divide(np.float32(1), tmp, out=tmp)  # inf on greys: inf · 0 below is NaN, patched to 0
    cv2.patchNaNs(np.multiply(tmp, fp, out=fp), 0)
    np.bitwise_or(m1, np.left_shift(m2, 1, out=code), out=code)
    np.add(cv2.LUT(code, _SAT_OFFSET, dst=d64), fp, out=d64)
    hh[...] = d64
    np.add(hh, np.float32(1), out=tmp)
    cv2.copyTo(tmp, np.less(hh, 0, out=m1.view(bool)).view(np.uint8), hh)


def _float32_factor(factor: float) -> np.float32:
    """The factor as TF takes it, a float32: past float32's range that is ±inf (no warning)."""
    with np.errstate(over="ignore"):
        return np.float32(factor)


def _saturation_run(px: np.ndarray, out: np.ndarray, s: list[np.ndarray], factor: float) -> None:
    """TF's AdjustSaturation on a run of pixels (rgb_to_hsv, s · factor clipped, hsv_to_rgb)."""
    import cv2

    d64 = s[0]
    v, span, sat, x, hh, tmp = s[1:7]
    r, g, b, v8, lo8, p8, q8, m1, m2, code, k, c0, c1, c2 = s[7:]
    cv2.split(px, [r, g, b])
    cv2.max(cv2.max(r, g, dst=v8), b, dst=v8)
    cv2.min(cv2.min(r, g, dst=lo8), b, dst=lo8)
    np.subtract(_levels(v8, v), _levels(lo8, span), out=span)
    cv2.patchNaNs(np.divide(span, v, out=sat), 0)  # black: 0/0 -> 0
    _saturation_hue([r, g, b, v8, p8, q8, m1, m2, code], [x, hh], span, hh, tmp, d64)
    scale = _float32_factor(factor)
    np.multiply(sat, scale, out=sat)
    if scale > 1:
        if np.isinf(scale):  # TF's min(1, max(0, s · scale)) sends the 0 · inf of greys (NaN) to 0
            cv2.patchNaNs(sat, 0)  # first: the threshold below would make NaN 1
        cv2.threshold(sat, 1.0, 1.0, cv2.THRESH_TRUNC, dst=sat)  # min(1, ·); s · factor <= 1 otherwise
    elif scale < 0:
        np.maximum(sat, np.float32(0), out=sat)  # max(0, ·): the kernel takes any factor, as TF's
    c, m, dh = sat, span, hh
    np.multiply(sat, v, out=c)
    np.subtract(v, c, out=m)
    np.multiply(hh, np.float32(6), out=dh)
    k[...] = dh  # truncation: the sextant
    tmp[...] = np.bitwise_and(k, np.uint8(0xFE), out=lo8)
    np.subtract(dh, tmp, out=x)  # dh mod 2, exact
    np.subtract(x, np.float32(1), out=x)
    np.abs(x, out=x)
    np.subtract(np.float32(1), x, out=x)
    np.multiply(c, x, out=x)
    for value, plane in ((np.add(x, m, out=x), c1), (np.add(c, m, out=c), c0), (m, c2)):
        np.multiply(value, np.float32(255.5), out=value)  # converted back without saturate=True
        plane[...] = value
    _by_sextant(k, c0, c1, c2, out, [r, g, b], m1, m2)


def adjust_saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """TF's AdjustSaturation kernel: RGB -> HSV (h in [0, 1)), s' = clip(s · factor, 0, 1), back.
    Bit-exact, double-precision hue offsets included."""
    if image.shape[2] != 3:
        return image.copy()  # grey has no saturation
    return _pixel_runs(image, _saturation_run, (1, 6, 14), factor)


def adjust_jpeg_quality(image: np.ndarray, quality: int) -> np.ndarray:
    """TF's adjust_jpeg_quality: libjpeg encode at `quality` with 4:2:0 chroma (Pillow's and
    OpenCV's encoders give the same bytes, whose pixels are TF's), then decode with the fast
    integer DCT and fancy upsampling, as TF does. Pillow for RGB: 3x faster than OpenCV's."""
    import simplejpeg

    q = int(min(max(quality, 0), 100))
    img = np.ascontiguousarray(image)
    if img.shape[2] == 1:
        import cv2

        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
                                             cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420])
        if not ok:
            raise ValueError("JPEG encoding failed")
        data = buf.tobytes()
    else:
        import io

        from PIL import Image

        out = io.BytesIO()
        Image.fromarray(img).save(out, format="JPEG", quality=q, subsampling=2)
        data = out.getvalue()
    decoded = simplejpeg.decode_jpeg(data, colorspace="GRAY" if img.shape[2] == 1 else "RGB", fastdct=True)
    return decoded.reshape(img.shape)


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


def check_crop_size(size: list[int], shape: tuple[int, ...]) -> None:
    """tf.image.random_crop's own checks, which it raises on: the channels of [h, w, c] must be the
    image's, and the crop must fit in it (a crop larger than the image fails that image)."""
    if len(size) == 3 and size[2] != shape[2]:
        raise ValueError(f"random_crop.size {size!r} asks for {size[2]} channel(s) but the image has {shape[2]}; "
                         f"accepted: [h, w] or [h, w, {shape[2]}]")
    if size[0] > shape[0] or size[1] > shape[1]:
        raise ValueError(f"random_crop.size {size!r} is larger than this {shape[0]}x{shape[1]} image (HxW), "
                         "as tf.image.random_crop refuses too")


def _sample_crop(args: dict[str, Any], rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    h, w = shape[:2]
    size = args["size"]
    if isinstance(size, list):
        check_crop_size(size, shape)
        ch, cw = size[0], size[1]
    else:
        ch, cw = max(1, int(round(h * size))), max(1, int(round(w * size)))
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return {"box": [y0, x0, y0 + ch, x0 + cw]}


def _sample_central(args: dict[str, Any], rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
    frac = args["central_fraction"]
    f = float(rng.uniform(frac[0], frac[1])) if isinstance(frac, list) else float(frac)
    return {"central_fraction": f, "box": central_box(shape[0], shape[1], f)}


# |delta| >= 1 already turns every pixel white or black; the cap only keeps the draw U[-d, d)
# finite (numpy's uniform raises past ~9e307), so an absurd value is an error naming its key.
_MAX_BRIGHTNESS = 1000
_P = Param("p", "float in [0, 1]", 1.0, "probability that the op runs (augexport's addition)", number(0, 1))
_RESIZE = Param("resize", "bool", True, "resize the crop back to the input size (tf.image.resize, bilinear)", boolean)
_FRACTION = one_of(number(0, 1, lo_open=True), pair(0, 1), accepted="a number in (0, 1] or a range [lo, hi] inside (0, 1]")


def _fraction_range(args: dict[str, Any], path: str) -> None:
    frac = args["central_fraction"]
    if isinstance(frac, list) and frac[0] <= 0:
        raise ConfigError(f"{path}.central_fraction", f"{frac!r}: the range must lie inside (0, 1]")


def _flip(axis: int) -> Kernel:
    """cv2.flip: numpy's copy of a reversed view is element by element (20x slower left-right)."""
    def kernel(img: np.ndarray, prm: dict[str, Any]) -> np.ndarray:
        if not prm["flip"]:
            return img.copy()
        import cv2

        return cv2.flip(np.ascontiguousarray(img), axis).reshape(img.shape)  # flipCode 1: left-right

    return kernel


OPS: dict[str, Op] = {op.name: op for op in (
    Op("random_brightness", "x + delta on [0, 1] floats, delta ~ U[-max_delta, max_delta)",
       (Param("max_delta", f"float in [0, {_MAX_BRIGHTNESS}]", 0.2, "largest |delta| (on the [0, 1] scale)",
              number(0, _MAX_BRIGHTNESS)), _P),
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
       (Param("size", "fraction or [h, w]", 0.875, "crop size: fraction of (H, W) in (0, 1], or pixels [h, w] (or "
              "[h, w, C], C the image's channels); an image smaller than [h, w] fails (skipped), as in TF", _crop_size),
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
        return self._sample(rng, shape, probe=False)

    def render(self, rng: np.random.Generator, image: np.ndarray, apply_all: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        """As Stage's; in the build-time dry run (apply_all) a pixel crop larger than the small probe
        image is fitted to it: real images have other sizes, and one too small fails by itself. What
        fails on every image (a channel count) still fails the dry run."""
        if not apply_all:
            return super().render(rng, image, apply_all)
        params = self._sample(rng, image.shape, probe=True)
        return self.apply(image, params), params

    def _sample(self, rng: np.random.Generator, shape: tuple[int, ...], probe: bool) -> dict[str, Any]:
        drawn = []
        for o in self.config["ops"]:
            op = OPS[o["op"]]
            if probe and op.name == "random_crop" and isinstance(o["size"], list):
                size = o["size"]
                o = {**o, "size": [min(size[0], shape[0]), min(size[1], shape[1]), *size[2:]]}
            if not probe and o["p"] < 1.0 and not rng.random() < o["p"]:  # the dry run tries every op
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
