"""`augmix`: keras_cv.layers.AugMix as KerasCV 0.9.0 implements it (Hendrycks et al. 2020).

AugMix.get_random_transformation draws chain weights w ~ Dirichlet(alpha·1) over `num_chains`
chains and a mixing weight m ~ Beta(alpha, alpha); augment_image builds each chain from the image by
d ops, d ~ U{lo..hi} of `chain_depth`, each op picked uniformly (_loop_on_depth) and given its own
severity v ~ U[lo, hi) of `severity` (a number x means [0.01, x]); the output is
m·image + (1 − m)·Σ w_i·chain_i. The ops (AugMix._apply_op, v in float32 as in TF):

    auto_contrast, equalize     as in randaugment
    posterize    keep the top 3 + int(3v) bits: (x >> s) << s, s = 5 − int(3v)
    rotate       about the centre by 30·v radians (KerasCV passes severity·30 to a radians API)
    solarize     255 − x where x >= int(255·v)
    shear_x/y    factor ±0.3·v (sign ±1 with probability 1/2), about the top-left corner
    translate_x  ±int(v·W / 3) whole pixels

KerasCV draws the op index from [0, 8), so its ninth op, translate_y, is never chosen; the pool here
is the eight reachable ops. Geometric ops use KerasCV's reflect fill and bilinear interpolation;
everything runs in float32 and is rounded once. Like randaugment, `value_range` must be [0, 255],
and there is no `p` (KerasCV's AugMix applies to every image) and no `seed`. All draws are recorded:
`{"chain_weights": [...], "mix_weight": m, "chains": [[{"op": "rotate", "severity": 0.2, "angle": 6.0}], ...]}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import augexport.stages.kerascv_ops as ops  # the module, not `from . import`: no edge back to the package

from ..errors import ConfigError
from ..registry import Stage, register
from ..spec import Param, number, one_of, pair, validate_mapping
from .randaugment import SEED_NOTE, VALUE_RANGE, reject_keys

F32 = ops.F32
Draw = Callable[[np.random.Generator, float, tuple[int, ...]], dict[str, Any]]
Kernel = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


def _shear(rng: np.random.Generator, v: float, shape: tuple[int, ...]) -> dict[str, Any]:
    return {"factor": float(F32(v) * F32(0.3) * F32(ops.random_sign(rng)))}


def _translate_x(rng: np.random.Generator, v: float, shape: tuple[int, ...]) -> dict[str, Any]:
    pixels = F32(v) * F32(shape[1]) / F32(3) * F32(ops.random_sign(rng))
    return {"pixels": int(pixels)}  # tf.cast(float -> int32) truncates towards zero


# name -> (draws from (rng, severity v, image shape), kernel, doc); in KerasCV's op-index order
POOL: dict[str, tuple[Draw | None, Kernel, str]] = {
    "auto_contrast": (None, lambda x, p: ops.auto_contrast(x), "stretch each channel to 0..255"),
    "equalize": (None, lambda x, p: ops.equalize(x), "per-channel histogram equalization"),
    "posterize": (lambda rng, v, s: {"shift": 5 - int(F32(v) * F32(3))}, lambda x, p: ops.posterize(x, p["shift"]),
                  "(x >> shift) << shift, shift = 5 − int(3v)"),
    "rotate": (lambda rng, v, s: {"angle": float(F32(v) * F32(30))},
               lambda x, p: ops.affine(x, ops.rotation_matrix(p["angle"], x.shape[1], x.shape[2])),
               "rotate about the centre by angle = 30v radians (KerasCV's units), reflect fill, bilinear"),
    "solarize": (lambda rng, v, s: {"threshold": float(int(F32(v) * F32(255)))},
                 lambda x, p: ops.solarize(x, 0.0, p["threshold"]), "255 − x where x >= threshold = int(255v)"),
    "shear_x": (_shear, lambda x, p: ops.affine(x, ops.shear_matrix(p["factor"], 0.0)),
                "input x' = x + factor·y, factor = ±0.3v; reflect fill, bilinear"),
    "shear_y": (_shear, lambda x, p: ops.affine(x, ops.shear_matrix(0.0, p["factor"])),
                "input y' = y + factor·x, factor = ±0.3v; reflect fill, bilinear"),
    "translate_x": (_translate_x, lambda x, p: ops.affine(x, ops.translation_matrix(float(p["pixels"]), 0.0)),
                    "shift right by pixels = ±int(vW/3)"),
}


def _severity(value: Any, path: str) -> Any:
    check = one_of(number(0.01, 1), pair(0.01, 1), accepted="a number in [0.01, 1] (meaning [0.01, x]) or a "
                                                            "list [lo, hi] inside [0.01, 1]")
    return check(value, path)


def _chain_depth(value: Any, path: str) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return number(0, 16, integer=True)(value, path)
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = (number(0, 16, integer=True)(v, f"{path}[{i}]") for i, v in enumerate(value))
        if lo > hi:
            raise ConfigError(path, f"low {lo} is greater than high {hi}")
        return [lo, hi]
    raise ConfigError(path, f"{value!r} is not accepted; accepted: an integer in [0, 16] or a list [lo, hi] of them")


def _bounds(value: Any, lo_default: float) -> tuple[float, float]:
    return (lo_default, float(value)) if isinstance(value, (int, float)) else (float(value[0]), float(value[1]))


def _chain(ops_drawn: list[dict[str, Any]], x: np.ndarray) -> np.ndarray:
    for prm in ops_drawn:
        x = POOL[prm["op"]][1](x, prm)
    return x


@register
class AugMix(Stage):
    name = "augmix"
    doc = ("keras_cv.layers.AugMix as in KerasCV 0.9.0: Dirichlet-weighted chains of random ops, blended with the "
           "image by a Beta weight (all draws recorded)")
    schema = (
        VALUE_RANGE,
        Param("severity", "float or [lo, hi] in [0.01, 1]", 0.3,
              "op strength v ~ U[0.01, x) (or U[lo, hi)), drawn per op", _severity),
        Param("num_chains", "int in [1, 16]", 3, "number of augmentation chains", number(1, 16, integer=True)),
        Param("chain_depth", "int or [lo, hi] in [0, 16]", [1, 3], "ops per chain ~ U{lo..hi}", _chain_depth),
        Param("alpha", "float > 0", 1.0, "Dirichlet(alpha) chain weights and Beta(alpha, alpha) mixing weight",
              number(0, None, lo_open=True)),
    )

    @classmethod
    def from_spec(cls, spec: Any, path: str) -> Stage:
        reject_keys(spec, path, {"seed": SEED_NOTE, "p": "not accepted: KerasCV's AugMix applies to every image "
                                                          "(its Beta mixing weight already keeps part of the original)"})
        return cls(validate_mapping(spec, cls.schema, path))

    def _draw_op(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        name = list(POOL)[int(rng.integers(0, len(POOL)))]
        draw = POOL[name][0]
        if draw is None:
            return {"op": name}
        lo, hi = _bounds(self.config["severity"], 0.01)
        severity = float(F32(rng.uniform(lo, hi) if hi > lo else lo))  # KerasCV draws it in float32
        return {"op": name, "severity": severity, **draw(rng, severity, shape)}

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        alpha, n = self.config["alpha"], self.config["num_chains"]
        weights = [float(w) for w in rng.dirichlet([alpha] * n)]
        mix = float(rng.beta(alpha, alpha))
        depth = self.config["chain_depth"]
        lo, hi = (depth, depth) if isinstance(depth, int) else depth  # KerasCV: an int d means [d, d]
        chains = [[self._draw_op(rng, shape) for _ in range(int(rng.integers(lo, hi + 1)))] for _ in range(n)]
        return {"chain_weights": weights, "mix_weight": mix, "chains": chains}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        x = ops.to_planes(image)
        mixed = np.zeros_like(x)
        for weight, chain in zip(params["chain_weights"], params["chains"], strict=True):
            mixed += F32(weight) * _chain(chain, x)
        m = F32(params["mix_weight"])
        return ops.to_uint8(m * x + (F32(1) - m) * mixed)

    @classmethod
    def ops_rows(cls) -> list[tuple[str, str, str, str]]:
        return super().ops_rows() + [("pool", name, "op", doc) for name, (_d, _k, doc) in POOL.items()]
