"""The `tf_image` stage's colour ops and flips on a batch, with TF's float32 formulas.

uint8 in, uint8 out per op, as TF's uint8 path: convert_image_dtype to float32 (x · (1/255)), the
op in TF's float32 order, back with trunc(clip(x · 255.5, 0, 255)) (the HSV ops: without the clip).
Contrast's channel means are summed as TF's AdjustContrastv2 kernel sums them (the plane folded in
halves); adjust_saturation's hue offsets are double constants, added here as a float32 pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from keras import ops

from .runtime import Tensor, add, per_copy, run, u8

_INV255 = np.float32(1.0 / 255.0)
#: the value a copy whose op did not apply gets (its result is not used)
_NEUTRAL = {"delta": 0.0, "factor": 1.0, "flip": False}


def _to_float(batch: Tensor) -> Tensor:
    return ops.multiply(ops.cast(batch, "float32"), _INV255)


def _to_uint8(x: Tensor) -> Tensor:
    return u8(ops.floor(ops.clip(ops.multiply(x, np.float32(255.5)), 0.0, 255.0)))


def brightness(batch: Tensor, deltas: Tensor) -> Tensor:
    return _to_uint8(add(_to_float(batch), per_copy(deltas)))


def channel_means(x: Tensor) -> Tensor:
    """(N, 1, 1, C) means of float32 (N, H, W, C) as TF's AdjustContrastv2 sums them: the pixels
    folded in halves (x[:n/2] + x[n/2:], an odd middle row kept), then · float32(1/n)."""
    n, h, w, c = (int(d) for d in x.shape)
    flat = ops.reshape(x, (n, h * w, c))
    left = h * w
    while left > 1:
        right = left // 2
        left -= right
        flat = ops.concatenate([add(flat[:, :right], flat[:, left:left + right]), flat[:, right:left]], axis=1)
    return ops.reshape(ops.multiply(flat[:, :1], np.float32(1) / np.float32(h * w)), (n, 1, 1, c))


def contrast(batch: Tensor, factors: Tensor) -> Tensor:
    x = _to_float(batch)
    mean = channel_means(x)
    return _to_uint8(add(mean, ops.multiply(per_copy(factors), ops.subtract(x, mean))))


def _rgb(batch: Tensor) -> list[Tensor]:
    x = _to_float(batch)
    return [x[..., 0], x[..., 1], x[..., 2]]


def _back(channels: Sequence[Tensor]) -> Tensor:
    """The HSV ops convert back without saturation: trunc(x · 255.5)."""
    return u8(ops.floor(ops.multiply(ops.stack(list(channels), axis=-1), np.float32(255.5))))


def _pick(category: Tensor, choices: Sequence[Sequence[Tensor]], default: Sequence[Tensor]) -> list[Tensor]:
    """Per pixel the channel triple of its category (TF's switch)."""
    out = list(default)
    for k in range(len(choices) - 1, -1, -1):
        hit = ops.equal(category, k)
        out = [ops.where(hit, choices[k][ch], out[ch]) for ch in range(3)]
    return out


def _plus_double(a: Tensor, c: float) -> Tensor:
    """float32(double(a) + c) in float32 arithmetic (jax has no float64 by default): c as a
    float32 pair hi + lo, a + hi exactly as a sum and its error (TwoSum), then one rounding."""
    hi = np.float32(c)
    lo = np.float32(c - float(hi))
    s = add(a, hi)
    bb = ops.subtract(s, a)
    err = add(ops.subtract(a, ops.subtract(s, bb)), ops.subtract(hi, bb))
    return add(s, add(err, lo))


def saturation(batch: Tensor, factors: Tensor) -> Tensor:
    """TF's AdjustSaturation: rgb_to_hsv, s · factor clipped to [0, 1], hsv_to_rgb."""
    r, g, b = _rgb(batch)
    v = ops.maximum(r, ops.maximum(g, b))
    span = ops.subtract(v, ops.minimum(r, ops.minimum(g, b)))
    s = ops.where(ops.greater(v, 0.0), ops.divide(span, ops.where(ops.greater(v, 0.0), v, np.float32(1))), 0.0)
    norm = ops.divide(np.float32(1), ops.multiply(ops.where(ops.greater(span, 0.0), span, np.float32(1)), np.float32(6)))
    hue = ops.where(ops.equal(r, v), ops.multiply(norm, ops.subtract(g, b)),
                    ops.where(ops.equal(g, v), _plus_double(ops.multiply(norm, ops.subtract(b, r)), 2.0 / 6.0),
                              _plus_double(ops.multiply(norm, ops.subtract(r, g)), 4.0 / 6.0)))
    hue = ops.where(ops.less_equal(span, 0.0), 0.0, hue)
    hue = ops.where(ops.less(hue, 0.0), add(hue, np.float32(1)), hue)
    scaled = ops.multiply(s, ops.reshape(factors, (-1, 1, 1)))
    # TF's min(1, max(0, s · f)) sends a grey's 0 · inf (a factor past float32's range) to 0; clip keeps NaN
    s = ops.clip(ops.where(ops.greater(s, 0.0), scaled, 0.0), 0.0, 1.0)
    chroma = ops.multiply(s, v)
    m = ops.subtract(v, chroma)
    dh = ops.multiply(hue, np.float32(6))
    fmod2 = ops.subtract(dh, ops.multiply(ops.floor(ops.multiply(dh, np.float32(0.5))), np.float32(2)))
    x = ops.multiply(chroma, ops.subtract(np.float32(1), ops.abs(ops.subtract(fmod2, np.float32(1)))))
    zero = ops.zeros_like(x)
    rgb = _pick(ops.floor(dh), [(chroma, x, zero), (x, chroma, zero), (zero, chroma, x), (zero, x, chroma),
                                (x, zero, chroma), (chroma, zero, x)], (zero, zero, zero))
    return _back([add(ch, m) for ch in rgb])


def hue(batch: Tensor, deltas: Tensor) -> Tensor:
    """TF's AdjustHue: h in [0, 6) from the (max, mid, min) ordering (TF's if-tree, ties
    included), h += 6·delta wrapped, rebuilt from (h, min, max)."""
    r, g, b = _rgb(batch)
    # the category of TF's rgb_to_hv_range: r < g ? (b < r: 1, b > g: 3, else 2) : (b < g: 0, b > r: 4, else 5)
    cat = ops.where(ops.less(r, g), ops.where(ops.less(b, r), 1, ops.where(ops.greater(b, g), 3, 2)),
                    ops.where(ops.less(b, g), 0, ops.where(ops.greater(b, r), 4, 5)))
    order = {0: (r, g, b), 1: (g, r, b), 2: (g, b, r), 3: (b, g, r), 4: (b, r, g), 5: (r, b, g)}  # (max, mid, min)
    vmax, vmid, vmin = _pick(cat, [order[k] for k in range(6)], order[5])
    span = ops.subtract(vmax, vmin)
    grey = ops.equal(span, 0.0)
    ratio = ops.divide(ops.subtract(vmid, vmin), ops.where(grey, np.float32(1), span))
    odd = ops.equal(ops.mod(cat, 2), 1)
    h = add(ops.cast(cat, "float32"), ops.where(odd, ops.subtract(np.float32(1), ratio), ratio))
    h = ops.where(grey, 0.0, h)
    h = add(h, ops.multiply(ops.reshape(deltas, (-1, 1, 1)), np.float32(6)))
    h = ops.where(ops.less(h, 0.0), add(h, np.float32(6)), h)
    h = ops.where(ops.greater_equal(h, 6.0), ops.subtract(h, np.float32(6)), h)
    k = ops.floor(h)
    frac = ops.subtract(h, k)
    frac = ops.where(ops.equal(ops.mod(k, 2.0), 1.0), ops.subtract(np.float32(1), frac), frac)
    mid = add(vmin, ops.multiply(frac, span))
    return _back(_pick(k, [(vmax, mid, vmin), (mid, vmax, vmin), (vmin, vmax, mid), (vmin, mid, vmax),
                           (mid, vmin, vmax), (vmax, vmin, mid)], (vmax, vmin, mid)))


def _flip(axis: int) -> Callable[[Tensor, Tensor], Tensor]:
    def kernel(batch: Tensor, flips: Tensor) -> Tensor:
        return ops.where(per_copy(flips), ops.flip(batch, axis=axis), batch)

    return kernel


#: op -> (batched kernel, the recorded param it takes, whether it is a colour op: RGB only)
OPS: dict[str, tuple[Callable[[Tensor, Tensor], Tensor], str, bool]] = {
    "random_brightness": (brightness, "delta", False),
    "random_contrast": (contrast, "factor", False),
    "random_saturation": (saturation, "factor", True),
    "random_hue": (hue, "delta", True),
    "random_flip_left_right": (_flip(2), "flip", False),
    "random_flip_up_down": (_flip(1), "flip", False),
}


def _op(batch: Tensor, a: dict[str, Tensor], static: tuple[Any, ...]) -> Tensor:
    name, every = static
    out = OPS[name][0](batch, a["values"])
    return out if every else ops.where(per_copy(a["applied"]), out, batch)


def tf_image(batch: Tensor, params: Sequence[dict[str, Any]]) -> Tensor:
    """The tf_image stage on a batch: op j of every copy at once; copies whose op j did not apply
    keep their pixels (the op runs on the whole batch: one shape per chunk, one compile)."""
    rgb = int(batch.shape[-1]) == 3
    for j in range(len(params[0]["ops"]) if params else 0):
        entries = [p["ops"][j] for p in params]
        name = entries[0]["op"]
        _, key, hsv = OPS[name]
        applied = [e.get("applied", True) is not False for e in entries]
        if not any(applied) or (hsv and not rgb):  # TF's HSV ops leave grey images as they are
            continue
        values = np.array([e[key] if a else _NEUTRAL[key] for e, a in zip(entries, applied, strict=True)],
                          dtype=bool if key == "flip" else np.float32)
        batch = run(_op, batch, {"values": values, "applied": np.array(applied)}, (name, all(applied)))
    return batch
