"""`randaugment`: keras_cv.layers.RandAugment as KerasCV 0.9.0 implements it (Cubuk et al. 2020).

The policy (RandomAugmentationPipeline._augment): `augmentations_per_image` times, with probability
`rate` pick one op uniformly from the pool (RandomChoice) and apply it. The pool and each op's
factor, from `RandAugment.get_standard_policy` and the `*_policy` functions of rand_augment.py, with
m = magnitude, s = magnitude_stddev and N(μ, σ)|[a, b] = KerasCV's NormalFactorSampler
(a normal draw clipped to [a, b]):

    auto_contrast, equalize                 no factor
    solarize     addition ~ N(110m, 110s)|[0, 110], threshold ~ N(255 − 255m, 255s)|[0, 255]
    color        factor ~ N(m, s)|[0, 1]        (RandomColorDegeneration: blend towards grey)
    contrast     factor ~ U[1 − m', 1 + m'), m' = max(m, 0.001)   (s unused, as in KerasCV)
    brightness   factor ~ U[−m, m); delta = 255·factor
    shear_x/y    factor = ±N(m, s)|[0, 1], sign ±1 with probability 1/2; about the top-left corner
    translate_x  factor ~ U[−m, m); shift = factor·W   (translate_y: factor·H)

The last four (geometric: true) warp with KerasCV's fill_mode reflect and bilinear interpolation.
The ops chain in float32 and the result is rounded once, as KerasCV returns floats. Every draw is
recorded: `{"ops": [{"op": "shear_x", "factor": -0.41}, {"applied": false}, ...]}`.

Choices where augexport differs from a KerasCV call: `value_range` must be [0, 255], because stage
images are always uint8 0..255 (both KerasCV layers convert to 0..255 internally, so KerasCV's result
for [0, 1] inputs is this result / 255); there is no stage-level `p` (`rate` is KerasCV's per-slot
probability) and no `seed` (the record's generator is the seed); `color` leaves 1-channel images
unchanged (KerasCV's rgb_to_grayscale needs 3 channels).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import augexport.stages.kerascv_ops as ops  # the module, not `from . import`: no edge back to the package

from ..errors import ConfigError
from ..registry import Stage, register
from ..spec import Param, boolean, number, validate_mapping

Draw = Callable[[np.random.Generator, float, float], dict[str, Any]]
Kernel = Callable[[np.ndarray, dict[str, Any]], np.ndarray]


def value_range(value: Any, path: str) -> list[float]:
    """KerasCV's value_range describes the input pixels; augexport's are always uint8 0..255."""
    numbers = isinstance(value, (list, tuple)) and all(type(v) in (int, float) for v in value)  # bools are not
    if numbers and len(value) == 2 and value[0] == 0 and value[1] == 255:
        return [0, 255]
    raise ConfigError(path, f"{value!r} is not accepted; accepted: [0, 255] (augexport stages see uint8 pixels 0..255; "
                            "KerasCV's output for images scaled to [0, 1] is this output / 255, so rescale when "
                            "you load the records)")


SEED_NOTE = ("not accepted: every draw comes from the record's generator, seeded by the pipeline's `seed` "
             "(and the source id and copy)")


def reject_keys(spec: Any, path: str, notes: dict[str, str]) -> None:
    """Keys a KerasCV user may reach for that augexport does not take, with the reason."""
    if isinstance(spec, dict):
        for key, note in notes.items():
            if key in spec:
                raise ConfigError(f"{path}.{key}", note)


def _solarize(rng: np.random.Generator, m: float, s: float) -> dict[str, Any]:
    return {"addition": ops.clipped_normal(rng, m * 110, s * 110, 0, 110),
            "threshold": ops.clipped_normal(rng, 255 - m * 255, s * 255, 0, 255)}


def _shear(rng: np.random.Generator, m: float, s: float) -> dict[str, Any]:
    size = ops.clipped_normal(rng, m, s, 0, 1)
    return {"factor": size * ops.random_sign(rng)}


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def _translate_x(x: np.ndarray, prm: dict[str, Any]) -> np.ndarray:
    return ops.affine(x, ops.translation_matrix(ops.F32(prm["factor"]) * ops.F32(x.shape[2]), 0.0))  # x is C x H x W


def _translate_y(x: np.ndarray, prm: dict[str, Any]) -> np.ndarray:
    return ops.affine(x, ops.translation_matrix(0.0, ops.F32(prm["factor"]) * ops.F32(x.shape[1])))


# name -> (how the factor is drawn from (rng, magnitude, stddev), the kernel, the doc line)
POOL: dict[str, tuple[Draw, Kernel, str]] = {
    "auto_contrast": (lambda rng, m, s: {}, lambda x, p: ops.auto_contrast(x),
                      "stretch each channel to 0..255 (AutoContrast)"),
    "equalize": (lambda rng, m, s: {}, lambda x, p: ops.equalize(x), "per-channel histogram equalization (Equalization)"),
    "solarize": (_solarize, lambda x, p: ops.solarize(x, p["addition"], p["threshold"]),
                 "y = clip(x + addition); 255 − y where y >= threshold; addition ~ N(110m, 110s)|[0, 110], "
                 "threshold ~ N(255(1 − m), 255s)|[0, 255]"),
    "color": (lambda rng, m, s: {"factor": ops.clipped_normal(rng, m, s, 0, 1)},
              lambda x, p: ops.color_degeneration(x, p["factor"]),
              "x + factor·(grey − x), factor ~ N(m, s)|[0, 1] (RandomColorDegeneration)"),
    "contrast": (lambda rng, m, s: {"factor": _uniform(rng, 1 - max(m, 0.001), 1 + max(m, 0.001))},
                 lambda x, p: ops.contrast(x, p["factor"]),
                 "(x − channel mean)·factor + mean, factor ~ U[1 − m', 1 + m'), m' = max(m, 0.001) (RandomContrast)"),
    "brightness": (lambda rng, m, s: {"factor": _uniform(rng, -m, m)},
                   lambda x, p: ops.brightness(x, ops.F32(p["factor"]) * ops.F32(255)),
                   "x + 255·factor, factor ~ U[−m, m) (RandomBrightness)"),
    "shear_x": (_shear, lambda x, p: ops.affine(x, ops.shear_matrix(p["factor"], 0.0)),
                "input x' = x + factor·y, factor = ±N(m, s)|[0, 1] (RandomShear; reflect fill, bilinear)"),
    "shear_y": (_shear, lambda x, p: ops.affine(x, ops.shear_matrix(0.0, p["factor"])),
                "input y' = y + factor·x, factor = ±N(m, s)|[0, 1] (RandomShear; reflect fill, bilinear)"),
    "translate_x": (lambda rng, m, s: {"factor": _uniform(rng, -m, m)}, _translate_x,
                    "shift right by factor·W, factor ~ U[−m, m) (RandomTranslation; reflect fill, bilinear)"),
    "translate_y": (lambda rng, m, s: {"factor": _uniform(rng, -m, m)}, _translate_y,
                    "shift down by factor·H, factor ~ U[−m, m) (RandomTranslation; reflect fill, bilinear)"),
}
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y")
VALUE_RANGE = Param("value_range", "[0, 255]", [0, 255],
                    "KerasCV's input range; augexport's pixels are always 0..255, so only [0, 255]", value_range)


def run_ops(image: np.ndarray, drawn: list[dict[str, Any]], pool: dict[str, tuple[Any, Kernel, str]]) -> np.ndarray:
    """Apply recorded ops in float32 (as KerasCV chains them) and round once."""
    x = ops.to_planes(image)
    for prm in drawn:
        if prm.get("applied", True) is not False:
            x = pool[prm["op"]][1](x, prm)
    return ops.to_uint8(x)


@register
class RandAugment(Stage):
    name = "randaugment"
    doc = ("keras_cv.layers.RandAugment with KerasCV 0.9.0's op pool and factor draws: each of augmentations_per_image "
           "slots applies, with probability rate, one op chosen uniformly (ops and factors recorded)")
    schema = (
        VALUE_RANGE,
        Param("augmentations_per_image", "int in [0, 16]", 3, "number of op slots per image",
              number(0, 16, integer=True)),
        Param("magnitude", "float in [0, 1]", 0.5, "mean strength m of every op", number(0, 1)),
        Param("magnitude_stddev", "float in [0, 1]", 0.15, "stddev s of the clipped-normal factor draws",
              number(0, 1)),
        Param("rate", "float in [0, 1]", 10 / 11,
              "probability that a slot applies an op (KerasCV 0.9's default 10/11: the paper's identity op)",
              number(0, 1)),
        Param("geometric", "bool", True, "include shear_x/y and translate_x/y in the pool", boolean),
    )

    @classmethod
    def from_spec(cls, spec: Any, path: str) -> Stage:
        reject_keys(spec, path, {"seed": SEED_NOTE, "p": "not accepted: `rate` is the probability of each op slot, "
                                                          "as in KerasCV (no op at all: (1 - rate)^augmentations_per_image)"})
        return cls(validate_mapping(spec, cls.schema, path))

    def pool(self) -> list[str]:
        return [n for n in POOL if self.config["geometric"] or n not in GEOMETRIC]

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        names, rate = self.pool(), self.config["rate"]
        m, s = self.config["magnitude"], self.config["magnitude_stddev"]
        drawn: list[dict[str, Any]] = []
        for _ in range(self.config["augmentations_per_image"]):
            if rate < 1.0 and not rng.random() < rate:
                drawn.append({"applied": False})
                continue
            name = names[int(rng.integers(0, len(names)))]
            drawn.append({"op": name, **POOL[name][0](rng, m, s)})
        return {"ops": drawn}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return run_ops(image, params["ops"], POOL)

    @classmethod
    def ops_rows(cls) -> list[tuple[str, str, str, str]]:
        rows = super().ops_rows()
        return rows + [("pool", name, "op", doc) for name, (_d, _k, doc) in POOL.items()]
