"""The fused bilinear warp of RGB uint8 images (`augexport._warp`, written in C): the bytes of
`cv2.warpAffine(src, m, size, flags=INTER_LINEAR | WARP_INVERSE_MAP, borderMode=REPLICATE or
CONSTANT)`, in one pass instead of OpenCV's two, ~2.9x faster per 500x375 image here.

It is optional. Where the extension was not built (no C compiler at install), the CPU has no
AVX2, or `AUGEXPORT_FUSED_WARP=0` is set, `warp_rgb` returns None and the caller runs OpenCV,
which gives the same bytes; tests/test_fused_warp.py holds the two equal over random maps,
sizes and both borders.
"""

from __future__ import annotations

import os

import numpy as np

try:
    from . import _warp
except ImportError:  # not built here: OpenCV's warp
    _warp = None

REPLICATE, CONSTANT = 0, 1
# OpenCV keeps a source position in a short: with a side this long its saturation is no longer
# always outside the image, which the kernel's clamp assumes. (The kernel's positions are also
# int32 offsets into the framed source: hence the size bound below.)
SHORT_LIMIT = 32767


def enabled() -> bool:
    """Whether `warp_rgb` runs here (built, AVX2, not switched off)."""
    return _warp is not None and os.environ.get("AUGEXPORT_FUSED_WARP", "1") != "0" and _warp.available()


def warp_rgb(src: np.ndarray, m: np.ndarray, size: tuple[int, int], border: int,
             cval: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray | None:
    """`src` (H, W, 3) uint8 warped to `size` = (width, height) by the 2x3 map `m` (output (x, y)
    -> source (x, y)), or None where the kernel does not run."""
    w, h = size
    if src.ndim != 3 or src.shape[2] != 3 or src.dtype != np.uint8 or 0 in src.shape or min(w, h) < 1 \
            or max(src.shape[:2]) >= SHORT_LIMIT or (src.shape[0] + 4) * (src.shape[1] + 4) * 3 >= 2**31 \
            or not enabled():
        return None
    out = np.empty((h, w, 3), np.uint8)
    coeffs = tuple(float(v) for v in np.asarray(m, dtype=np.float64)[:2].ravel())
    _warp.affine_rgb(np.ascontiguousarray(src), src.shape[0], src.shape[1], out, h, w, coeffs, border,
                     tuple(int(v) for v in cval))
    return out


def inverse_map(m: np.ndarray) -> np.ndarray:
    """The 2x3 inverse OpenCV's warpAffine computes for a forward map (no WARP_INVERSE_MAP), step
    for step in float64, so that the warp reads the same source positions (a singular map gives
    zeros, as there)."""
    m00, m01, m02, m10, m11, m12 = (float(v) for v in np.asarray(m, dtype=np.float64)[:2].ravel())
    d = m00 * m11 - m01 * m10
    d = 1.0 / d if d != 0 else 0.0
    a00, a01, a10, a11 = m11 * d, m01 * -d, m10 * -d, m00 * d
    return np.array([[a00, a01, -a00 * m02 - a01 * m12], [a10, a11, -a10 * m02 - a11 * m12]])


def border_value(cval: tuple[float, ...]) -> tuple[int, int, int]:
    """cv2's `borderValue` for a uint8 image: a Scalar (missing channels 0), each saturated."""
    values = (tuple(cval) + (0, 0, 0))[:3]
    return tuple(min(max(int(round(float(v))), 0), 255) for v in values)  # type: ignore[return-value]
