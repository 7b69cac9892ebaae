"""KerasCV 0.9's image ops as numpy kernels, shared by the `randaugment` and `augmix` stages.

Every kernel takes and returns float32 pixels on the 0..255 scale, as KerasCV's layers do (they
compute in float32 and never round between ops), so a policy chains them in float and rounds once
at the end (`to_uint8`). Kernels hold the image as C x H x W planes (`to_planes`). Each kernel
follows the KerasCV / TensorFlow source it names:

- `auto_contrast` (AutoContrast.augment_images): per channel (x − min)·255/(max − min), clipped;
  a constant channel is left as is (KerasCV's NaN fallback).
- `equalize` (Equalization.equalize_channel), per channel on trunc(x): step = (N − the smallest
  non-zero bin count) // 255 (PIL takes the last non-zero bin instead), lut = (cumsum + step // 2)
  // step shifted right by one bin; step 0 leaves the channel as is.
- `solarize` (Solarization): y = clip(x + addition, 0, 255); y if y < threshold else 255 − y.
- `color_degeneration` (RandomColorDegeneration + utils.preprocessing.blend): x + f·(grey − x),
  grey = tf.image.rgb_to_grayscale's 0.2989 R + 0.5870 G + 0.1140 B, clipped to 0..255.
- `contrast` (RandomContrast): (x − channel mean)·f + mean, clipped. `brightness`
  (RandomBrightness): x + delta, clipped. `posterize` (AugMix._posterize): (trunc(x) >> s) << s.
- `affine` (utils.preprocessing.transform = ImageProjectiveTransformV3 with KerasCV's defaults:
  fill_mode reflect, interpolation bilinear): output pixel (x, y) reads the input at
  (a0·x + a1·y + a2, b0·x + b1·y + b2), coordinates mapped into the image by TF's reflect rule
  (d c b a | a b c d | d c b a) and clamped, then TF's bilinear formula.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32
GREY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)  # tf.image.rgb_to_grayscale


def to_planes(image: np.ndarray) -> np.ndarray:
    """uint8 HxWxC -> float32 CxHxW: per-channel reductions and per-pixel weights then run over
    contiguous planes (numpy is several times slower over a short last axis)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)


def to_uint8(planes: np.ndarray) -> np.ndarray:
    """KerasCV's float output stored as pixels: rounded to nearest, clipped to 0..255, HxWxC."""
    out = np.clip(np.rint(planes), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def clipped_normal(rng: np.random.Generator, mean: float, stddev: float, lo: float, hi: float) -> float:
    """keras_cv.core.NormalFactorSampler: clip(N(mean, stddev²), lo, hi)."""
    return float(np.clip(rng.normal(mean, stddev), lo, hi))


def random_sign(rng: np.random.Generator) -> float:
    """utils.preprocessing.random_inversion: −1 with probability 1/2."""
    return -1.0 if rng.random() > 0.5 else 1.0


def _per_plane(values: np.ndarray) -> np.ndarray:
    return values.reshape(-1, 1, 1)


# -- colour ops (float32 C x H x W planes on the 0..255 scale in and out) ---------------------------
def auto_contrast(x: np.ndarray) -> np.ndarray:
    flat = x.reshape(x.shape[0], -1)
    low, high = _per_plane(flat.min(axis=1)), _per_plane(flat.max(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = F32(255.0) / (high - low)
        offset = -low * scale
        out = np.clip(x * scale + offset, 0, 255)
    return np.where(np.isnan(out), x, out).astype(np.float32, copy=False)


def _equalize_plane(plane: np.ndarray) -> np.ndarray:
    hist = np.bincount(plane.ravel(), minlength=256)[:256]
    step = (int(hist.sum()) - int(hist[hist > 0].min())) // 255
    if step == 0:
        return plane.astype(np.float32)
    lut = (np.cumsum(hist) + step // 2) // step
    lut = np.clip(np.concatenate([[0], lut[:-1]]), 0, 255).astype(np.float32)
    return lut[plane]


def equalize(x: np.ndarray) -> np.ndarray:
    # tf.cast(float -> int32) truncates, as the layer does before histogramming
    xi = np.clip(x, 0, 255).astype(np.intp)
    return np.stack([_equalize_plane(plane) for plane in xi])


def solarize(x: np.ndarray, addition: float, threshold: float) -> np.ndarray:
    y = np.clip(x + F32(addition), 0, 255)
    np.subtract(F32(255), y, out=y, where=y >= F32(threshold))
    return y


def color_degeneration(x: np.ndarray, factor: float) -> np.ndarray:
    """Blend towards grey; a 1-channel image is its own grey, so it is returned unchanged."""
    if x.shape[0] != 3:
        return x.copy()
    r, g, b = GREY_WEIGHTS
    grey = r * x[0] + g * x[1] + b * x[2]
    return np.clip(x + F32(factor) * (grey - x), 0, 255)


def contrast(x: np.ndarray, factor: float) -> np.ndarray:
    mean = _per_plane(x.reshape(x.shape[0], -1).mean(axis=1, dtype=np.float64).astype(np.float32))
    return np.clip((x - mean) * F32(factor) + mean, 0, 255)


def brightness(x: np.ndarray, delta: float) -> np.ndarray:
    return np.clip(x + F32(delta), 0, 255)


def posterize(x: np.ndarray, shift: int) -> np.ndarray:
    xi = np.clip(x, 0, 255).astype(np.uint8)  # tf.cast(float -> uint8) truncates
    return ((xi >> shift) << shift).astype(np.float32)


# -- geometry -------------------------------------------------------------------------------------
def _reflect(coord: np.ndarray, n: int) -> np.ndarray:
    """TF's MapCoordinate<FILL_REFLECT> on float32 coordinates, then clamped to [0, n − 1]."""
    if n <= 1:
        return np.zeros_like(coord)
    if coord.min() >= 0 and coord.max() <= n - 1:
        return coord
    sz2 = F32(2 * n)
    neg = sz2 * np.trunc(-coord / sz2) + coord
    neg = np.where(neg < -n, neg + sz2, -neg - F32(1))
    pos = coord - sz2 * np.trunc(coord / sz2)
    pos = np.where(pos >= n, sz2 - pos - F32(1), pos)
    out = np.where(coord < 0, neg, np.where(coord > n - 1, pos, coord))
    return np.clip(out, 0, n - 1).astype(np.float32)


def _taps(coord: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, bool]:
    """floor/ceil indices (as float32, for cv2.remap) and TF's weights (ceil − c, c − floor);
    `exact` when every coordinate is integral (the ceil tap then has weight 0 and is skipped)."""
    lo = np.floor(coord)
    w_hi = coord - lo
    w_lo = (lo + F32(1)) - coord
    # a ceil tap past the edge only ever has weight 0 (coordinates are clamped to n − 1), where TF
    # reads the fill value 0; reading the edge pixel instead adds the same 0
    hi = np.minimum(lo + F32(1), F32(n - 1))
    return lo, hi, w_lo, w_hi, not w_hi.any()


def _gather(x: np.ndarray, cols: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """x[:, rows, cols] for integral float32 index maps (cv2.remap's nearest lookup is a plain
    copy, ~3x faster than numpy fancy indexing; its maps hold shorts, hence the fallback)."""
    if max(x.shape[1:]) < 32767:
        import cv2  # lazily: `augexport --help` stays fast

        # every plane and every dst row contiguous, so that cv2 reads and writes them in place
        out = np.empty(x.shape, dtype=np.float32)
        for plane, dst in zip(np.ascontiguousarray(x), out, strict=True):
            cv2.remap(plane, cols, rows, cv2.INTER_NEAREST, dst=dst)
        return out
    return x[:, rows.astype(np.intp), cols.astype(np.intp)]


def affine(x: np.ndarray, matrix: tuple[float, float, float, float, float, float]) -> np.ndarray:
    """ImageProjectiveTransformV3 (reflect fill, bilinear) for [a0, a1, a2, b0, b1, b2, 0, 0]."""
    _, h, w = x.shape
    a0, a1, a2, b0, b1, b2 = (F32(v) for v in matrix)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    src_x = _reflect(np.ascontiguousarray(np.broadcast_to(a0 * xs + a1 * ys + a2, (h, w))), w)
    src_y = _reflect(np.ascontiguousarray(np.broadcast_to(b0 * xs + b1 * ys + b2, (h, w))), h)
    x0, x1, wx0, wx1, x_exact = _taps(src_x, w)
    y0, y1, wy0, wy1, y_exact = _taps(src_y, h)

    def row(rows: np.ndarray) -> np.ndarray:
        if x_exact:  # weights (1, 0): TF's sum is the floor tap exactly
            return _gather(x, x0, rows)
        return _weighted(_gather(x, x0, rows), wx0, _gather(x, x1, rows), wx1)

    top = row(y0)
    return top if y_exact else _weighted(top, wy0, row(y1), wy1)


def _weighted(a: np.ndarray, wa: np.ndarray, b: np.ndarray, wb: np.ndarray) -> np.ndarray:
    """wa·a + wb·b, TF's bilinear step, computed in place in `a` (the same float32 rounding)."""
    a *= wa
    b *= wb
    a += b
    return a


def shear_matrix(x_factor: float, y_factor: float) -> tuple[float, float, float, float, float, float]:
    """RandomShear._build_shear_{x,y}_transform_matrix: (1, sx, 0; sy, 1, 0), about the origin."""
    return (1.0, x_factor, 0.0, y_factor, 1.0, 0.0)


def translation_matrix(dx: float, dy: float) -> tuple[float, float, float, float, float, float]:
    """utils.preprocessing.get_translation_matrix: the input is read at (x − dx, y − dy)."""
    return (1.0, 0.0, -dx, 0.0, 1.0, -dy)


def rotation_matrix(angle: float, height: int, width: int) -> tuple[float, float, float, float, float, float]:
    """utils.preprocessing.get_rotation_matrix (angle in radians, about the image centre)."""
    a, hm, wm = F32(angle), F32(height - 1), F32(width - 1)
    cos, sin = np.cos(a), np.sin(a)
    x_offset = (wm - (cos * wm - sin * hm)) / F32(2)
    y_offset = (hm - (sin * wm + cos * hm)) / F32(2)
    return (float(cos), float(-sin), float(x_offset), float(sin), float(cos), float(y_offset))
