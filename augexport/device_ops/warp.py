"""The `keras` stage on a batch: `apply_keras`'s affine warp and intensity, OpenCV's arithmetic.

Source coordinates are OpenCV's own fixed point. `cv2.warpAffine` rounds (m·x)·1024 per column and
(m·y + m₀₂)·1024 per row (done on the host: O(H + W) per copy), adds half a step, keeps 1/32 pixel
(nearest: whole pixels) and blends the 4 neighbours with integer weights w·32 that sum to 2¹⁵,
rounded by (Σ + 2¹⁴) >> 15; its float32 warp uses the same neighbours with float weights. `wrap`
is the CPU kernel's float32 maps through `cv2.remap`: rint(coordinate·32). Fill modes as the CPU
kernel: `nearest` clamps each neighbour index, `reflect` mirrors it (period 2n, edge repeated),
`constant` clamps and then sets the outside (the same per-row intervals, `inside_columns`) to
cval, `wrap` takes coordinates outside [0, n-1] modulo n-1 and clamps. Intensity: the CPU's tables
(channel shift, brightness) around the clip to the copy's [min, max]; a bilinear warp followed by
a brightness is float and truncated, as Keras does it (`_warp_then_brightness`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from keras import ops

from ..stages.keras import (
    affine_matrix,
    fill_before_brightness,
    flip_matrix,
    inside_columns,
    intensity_lut,
)
from .runtime import Tensor, add, copy_offsets, per_copy, run, u8

_AB = 1024  # warpAffine's fixed point: 10 fractional bits of the source coordinate
_TAB = 32  # then 1/32 pixel for the bilinear weights (INTER_BITS = 5)
_ONE = 1 << 15  # the integer weights sum to 2**15 (INTER_REMAP_COEF_BITS)
_LIMIT = 2**29  # coordinates far outside any image are clipped here: int32 sums cannot overflow


def _maps(params: Sequence[dict[str, Any]], h: int, w: int, fix_axes: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per copy the 3x3 map output (x, y) -> source (x, y), flips folded in, and whether Keras
    resamples (False: no geometric draw; then the flips alone, exact index maps either way)."""
    maps, resamples = [], []
    for prm in params:
        flips = flip_matrix(h, w, bool(prm.get("flip_horizontal")), bool(prm.get("flip_vertical")))
        m = affine_matrix(prm, h, w, fix_axes)
        maps.append(flips if m is None else m @ flips)
        resamples.append(m is not None)
    return np.stack(maps), np.array(resamples)


def _fixed_point(ms: np.ndarray, h: int, w: int, nearest: bool) -> dict[str, np.ndarray]:
    """warpAffine's per-column rint((m·x)·1024) and per-row rint((m·y + m₀₂)·1024) + half a step,
    for the x (row 0 of m) and y (row 1) source coordinates: (2, N, W) and (2, N, H) int32."""
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    half = _AB // 2 if nearest else _AB // _TAB // 2
    cols = np.stack([np.rint(ms[:, r, 0, None] * xs * _AB) for r in (0, 1)])
    rows = np.stack([np.rint((ms[:, r, 1, None] * ys + ms[:, r, 2, None]) * _AB) + half for r in (0, 1)])
    return {"cols": np.clip(cols, -_LIMIT, _LIMIT).astype(np.int32),
            "rows": np.clip(rows, -_LIMIT, _LIMIT).astype(np.int32)}


def _wrap_terms(ms: np.ndarray, h: int, w: int) -> dict[str, np.ndarray]:
    """`wrap`: the CPU kernel's float32 map m00·x + (m01·y + m02) as its two float32 terms, per
    column and per row (host, O(H + W)); the device adds them, so no compiler can fuse the
    multiply into the add (an FMA rounds once, and moves a coordinate across a 1/32 step)."""
    m32 = ms.astype(np.float32)
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    cols = np.stack([m32[:, r, 0, None] * xs for r in (0, 1)])
    rows = np.stack([m32[:, r, 1, None] * ys + m32[:, r, 2, None] for r in (0, 1)])
    return {"cols": cols.astype(np.float32), "rows": rows.astype(np.float32)}


def _shift_tables(params: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
    """The CPU's `intensity_lut` split around its clip: t1[v] = rint(v + shift) (trunc when a
    brightness follows), clip to the copy's [lo, hi], t2 = the brightness table. Exact: lo and hi
    are whole levels, and rint/trunc commute with a clip to whole bounds."""
    v = np.arange(256, dtype=np.float64)
    t1, t2, shifts = [], [], []
    for prm in params:
        shift, bright = prm.get("channel_shift_intensity"), prm.get("brightness")
        s = 0.0 if shift is None else shift
        t1.append(np.rint(v + s) if bright is None else np.trunc(v + s))
        t2.append(np.arange(256) if bright is None else intensity_lut(0, 255, None, bright))
        shifts.append(s)
    return {"t1": np.stack(t1).astype(np.int32), "t2": np.stack(t2).astype(np.int32),
            "has_shift": np.array([p.get("channel_shift_intensity") is not None for p in params]),
            "shift": np.array(shifts, dtype=np.float32)}


def _fill_levels(params: Sequence[dict[str, Any]], cval: float) -> np.ndarray:
    """The constant fill of each copy's uint8 warp, as `apply_keras` makes it."""
    return np.array([np.clip(np.rint(fill_before_brightness(cval, p.get("brightness"))), 0, 255) for p in params],
                    dtype=np.int32)


def keras_warp(batch: Tensor, params: Sequence[dict[str, Any]], *, fill_mode: str, cval: float, order: int,
               fix_axes: bool) -> Tensor:
    """`apply_keras(image, params, fill_mode, cval, order, fix_axes)` for every copy of the batch."""
    n, h, w, _ = (int(d) for d in batch.shape)
    ms, resamples = _maps(params, h, w, fix_axes)
    float_path = resamples & np.array([p.get("brightness") is not None for p in params]) & (order != 0)
    resample = not all(np.array_equal(m, np.eye(3)) for m in ms)
    arrays: dict[str, np.ndarray] = {}
    if resample:
        arrays.update(_wrap_terms(ms, h, w) if fill_mode == "wrap" else _fixed_point(ms, h, w, order == 0))
        if fill_mode == "constant":
            bounds = [inside_columns(m, h, w) for m in ms]
            arrays["first"] = np.stack([b[0] for b in bounds]).astype(np.int32)
            arrays["last"] = np.stack([b[1] for b in bounds]).astype(np.int32)
            arrays["fill"] = _fill_levels(params, cval)
    intensity = any(p.get("channel_shift_intensity") is not None or p.get("brightness") is not None for p in params)
    if intensity:
        arrays.update(_shift_tables(params), float_path=float_path)
    static = (fill_mode, float(cval), order, resample, bool(float_path.any()), intensity)
    return run(_warp, batch, arrays, static)


def _warp(batch: Tensor, a: dict[str, Tensor], static: tuple[Any, ...]) -> Tensor:
    fill_mode, cval, order, resample, need_float, intensity = static
    n, h, w, _ = (int(d) for d in batch.shape)
    if resample:
        levels, values = _resample(batch, a, fill_mode, order, need_float)
        if fill_mode == "constant":
            cols = ops.reshape(ops.arange(w, dtype="int32"), (1, 1, w, 1))
            outside = ops.logical_or(ops.less(cols, ops.reshape(a["first"], (n, h, 1, 1))),
                                     ops.greater(cols, ops.reshape(a["last"], (n, h, 1, 1))))
            levels = ops.where(outside, per_copy(a["fill"]), levels)
            if values is not None:
                values = ops.where(outside, np.float32(cval), values)
    else:
        levels = ops.cast(batch, "int32")
        values = ops.cast(batch, "float32") if need_float else None
    if not intensity:
        return u8(levels)
    lo, hi = _copy_range(levels, a["has_shift"], 0, 255)
    out = _lookup(a["t2"], ops.clip(_lookup(a["t1"], levels), lo, hi))
    if values is not None:
        vlo, vhi = _copy_range(values, a["has_shift"], -np.inf, np.inf)
        shifted = ops.clip(add(values, per_copy(a["shift"])), vlo, vhi)
        truncated = ops.cast(ops.floor(ops.clip(shifted, 0.0, 255.0)), "int32")
        out = ops.where(per_copy(a["float_path"]), _lookup(a["t2"], truncated), out)
    return u8(out)


def _coords(a: dict[str, Tensor], n: int, h: int, w: int, fill_mode: str, nearest: bool) -> list[Tensor]:
    """Source x and y (N, H, W) int32, row term + column term: 1/32 pixel for bilinear, whole
    pixels for nearest."""
    out = []
    for r, size in ((0, w), (1, h)):
        total = add(ops.reshape(a["rows"][r], (n, h, 1)), ops.reshape(a["cols"][r], (n, 1, w)))
        if fill_mode != "wrap":  # warpAffine's fixed point
            out.append(ops.floor_divide(total, _AB if nearest else _AB // _TAB))
            continue
        if size > 1:  # wrap: outside [0, n-1] modulo n-1, then cv2.remap's rounding
            period = np.float32(size - 1)
            outside = ops.logical_or(ops.less(total, 0.0), ops.greater(total, period))
            wrapped = ops.mod(total, period)  # an exact negative multiple goes to n-1, as scipy sends it
            wrapped = ops.where(ops.logical_and(ops.equal(wrapped, 0.0), ops.less(total, 0.0)), period, wrapped)
            total = ops.where(outside, wrapped, total)
        else:
            total = ops.zeros_like(total)
        out.append(ops.cast(ops.round(total if nearest else ops.multiply(total, np.float32(_TAB))), "int32"))
    return out


def _short(i: Tensor) -> Tensor:
    """OpenCV keeps the integer source coordinate in a short (saturated) before it looks it up."""
    return ops.clip(i, -32768, 32767)


def _border(i: Tensor, n: int, reflect: bool) -> Tensor:
    """BORDER_REFLECT (mirror with the edge repeated: period 2n) or BORDER_REPLICATE (clamp) of a
    coordinate already saturated (`_short`); the right neighbour, saturated + 1, may be 32768."""
    if not reflect:
        return ops.clip(i, 0, n - 1)
    q = ops.mod(i, 2 * n)
    return ops.where(ops.greater_equal(q, n), 2 * n - 1 - q, q)


def _resample(batch: Tensor, a: dict[str, Tensor], fill_mode: str, order: int, need_float: bool
              ) -> tuple[Tensor, Tensor | None]:
    """The warp before the fill: int32 levels as OpenCV's uint8 warp, and (need_float) the float32
    values of its float32 warp, both from the same neighbours."""
    n, h, w, c = (int(d) for d in batch.shape)
    X, Y = _coords(a, n, h, w, fill_mode, order == 0)
    reflect = fill_mode == "reflect"
    # gathered as float32 rows (exact for 0..255): a row gather of floats is every backend's
    # embedding lookup; the arithmetic after it is int32
    flat = ops.reshape(ops.cast(batch, "float32"), (n * h * w, c))
    base = ops.reshape(copy_offsets(n, h * w), (n, 1, 1))

    def gather(iy: Tensor, ix: Tensor) -> Tensor:
        idx = ops.reshape(add(base, add(ops.multiply(iy, w), ix)), (-1,))
        return ops.cast(ops.reshape(ops.take(flat, idx, axis=0), (n, h, w, c)), "int32")

    if order == 0:
        p = gather(_border(_short(Y), h, reflect), _border(_short(X), w, reflect))
        return p, (ops.cast(p, "float32") if need_float else None)
    ix, iy = ops.floor_divide(X, _TAB), ops.floor_divide(Y, _TAB)
    ax = ops.expand_dims(ops.subtract(X, ops.multiply(ix, _TAB)), 3)
    ay = ops.expand_dims(ops.subtract(Y, ops.multiply(iy, _TAB)), 3)
    ix, iy = _short(ix), _short(iy)  # once: OpenCV adds 1 for the neighbour after saturating
    cols = [_border(ix, w, reflect), _border(add(ix, 1), w, reflect)]
    rows = [_border(iy, h, reflect), _border(add(iy, 1), h, reflect)]
    p = [gather(rows[i], cols[j]) for i in (0, 1) for j in (0, 1)]
    bx, by = _TAB - ax, _TAB - ay
    weights = [by * bx * _TAB, by * ax * _TAB, ay * bx * _TAB, ay * ax * _TAB]
    total = p[0] * weights[0] + p[1] * weights[1] + p[2] * weights[2] + p[3] * weights[3]
    levels = ops.floor_divide(total + _ONE // 2, _ONE)
    if not need_float:
        return levels, None
    fx = ops.cast(ax, "float32") / np.float32(_TAB)
    fy = ops.cast(ay, "float32") / np.float32(_TAB)
    gx, gy = 1.0 - fx, 1.0 - fy
    pf = [ops.cast(v, "float32") for v in p]
    return levels, pf[0] * (gy * gx) + pf[1] * (gy * fx) + pf[2] * (fy * gx) + pf[3] * (fy * fx)


def _lookup(tables: Tensor, levels: Tensor) -> Tensor:
    """tables[k][levels[k]] per copy k: one gather in the flattened (N·256) tables."""
    n = int(tables.shape[0])
    return ops.take(ops.reshape(tables, (-1,)), add(levels, copy_offsets(n, 256)))


def _copy_range(x: Tensor, has_shift: Tensor, lo: float, hi: float) -> tuple[Tensor, Tensor]:
    """Each copy's [min, max] over all its pixels where it has a channel shift, else [lo, hi]."""
    mask = per_copy(has_shift)
    mn, mx = ops.min(x, axis=(1, 2, 3), keepdims=True), ops.max(x, axis=(1, 2, 3), keepdims=True)
    return ops.where(mask, mn, lo), ops.where(mask, mx, hi)
