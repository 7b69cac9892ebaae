"""randaugment / augmix against KerasCV 0.9.0 itself: every op given the factor the stage drew, then
whole stages through the real RandAugment and AugMix layers with their random draws replaced by the
ones the stage recorded.

Tolerance (measured on noise, smooth and 224x224 images): every op and both whole stages give the
same uint8 pixels as round(KerasCV's float output) except where float32 rounding order differs
(rgb_to_grayscale's matmul, TF's rotation arithmetic): at most 1 level, on < 0.1% of the values
(measured: 0-0.002%, see the assertions' messages).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from augexport.rng import example_rng
from augexport.stages import augmix, randaugment
from augexport.stages import kerascv_ops as ops
from tests.conftest import smooth_image

MAX_LEVELS = 1
MAX_FRACTION = 1e-3


@pytest.fixture(scope="module")
def tf():  # the tensorflow module
    return pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def kcv():  # the keras_cv module
    return pytest.importorskip("keras_cv")


def images(channels: int = 3) -> list[np.ndarray]:
    noise = np.random.default_rng(0).integers(0, 256, (37, 53, channels), dtype=np.uint8)
    return [noise, smooth_image(3, 61, 47, channels), smooth_image(5, 96, 128, channels)]


def assert_close(ours: np.ndarray, theirs: Any, what: str) -> None:
    """`ours` uint8 HxWxC; `theirs` KerasCV's float output, rounded as augexport stores it."""
    ref = np.clip(np.rint(np.asarray(theirs, dtype=np.float32)), 0, 255).astype(np.int16)
    diff = np.abs(ours.astype(np.int16) - ref.reshape(ours.shape))
    frac = float(np.mean(diff > 0))
    assert diff.max() <= MAX_LEVELS and frac <= MAX_FRACTION, f"{what}: max {diff.max()} levels, {frac:.2e} differ"


class Script:
    """Stands in for a KerasCV random source: every call (a layer's `_random_generator.uniform`
    or a factor sampler) returns the next scripted value, shaped as asked."""

    made: list[Script] = []

    def __init__(self, tf: Any, values: list[float] | None = None) -> None:
        self.tf, self.values = tf, list(values or [])
        Script.made.append(self)

    @classmethod
    def assert_all_used(cls) -> None:
        """KerasCV took exactly the recorded path: it asked for every scripted draw, no more."""
        left = [s.values for s in cls.made if s.values]
        cls.made.clear()
        assert not left, f"KerasCV did not use the draws {left}"

    def uniform(self, shape: Any = (), minval: Any = 0, maxval: Any = None, dtype: Any = None, **_: Any) -> Any:
        return self(shape, dtype or self.tf.float32)

    def __call__(self, shape: Any = (), dtype: Any = "float32") -> Any:
        return self.tf.fill(shape, self.tf.cast(self.values.pop(0), dtype))


# -- randaugment: each op through its KerasCV layer, with the stage's drawn factor ----------------
def _ra_layer(kcv: Any, tf: Any, op: str, prm: dict[str, Any]) -> Callable[[Any], Any]:
    """KerasCV's layer for `op` fixed to the drawn factor (a constant range [f, f])."""
    L, f = kcv.layers, prm.get("factor")
    if op == "solarize":
        return L.Solarization((0, 255), addition_factor=(prm["addition"],) * 2, threshold_factor=(prm["threshold"],) * 2)
    if op in ("shear_x", "shear_y"):  # the sign is drawn inside the layer: pass the transformation itself
        layer, t = L.RandomShear(x_factor=0.5, y_factor=0.5), tf.constant([[f]], tf.float32)
        return lambda x: layer.augment_images(x, {"shear_x": t if op == "shear_x" else None,
                                                  "shear_y": t if op == "shear_y" else None})
    return {
        "auto_contrast": lambda: L.AutoContrast((0, 255)),
        "equalize": lambda: L.Equalization((0, 255)),
        "color": lambda: L.RandomColorDegeneration((f, f)),
        "contrast": lambda: L.RandomContrast((0, 255), (1 - f, f - 1)),  # KerasCV: [1 - lower, 1 + upper]
        "brightness": lambda: L.RandomBrightness((f, f), value_range=(0, 255)),
        "translate_x": lambda: L.RandomTranslation((0.0, 0.0), (f, f)),
        "translate_y": lambda: L.RandomTranslation((f, f), (0.0, 0.0)),
    }[op]()


@pytest.mark.parametrize("op", list(randaugment.POOL))
@pytest.mark.parametrize("channels", [3, 1])
def test_randaugment_op_equals_its_kerascv_layer(tf, kcv, op: str, channels: int) -> None:
    if op == "color" and channels == 1:
        pytest.skip("KerasCV's rgb_to_grayscale needs 3 channels; augexport leaves grey images as they are")
    draw, kernel, _ = randaugment.POOL[op]
    for i, image in enumerate(images(channels)):
        for seed in range(3):
            prm = draw(np.random.default_rng([i, seed]), 0.7, 0.3)
            ours = ops.to_uint8(kernel(ops.to_planes(image), prm))
            theirs = _ra_layer(kcv, tf, op, prm)(tf.constant(image[None], tf.float32))[0]
            assert_close(ours, theirs, f"{op} {prm} on image {i}")
            Script.assert_all_used()


def test_colour_degeneration_leaves_grey_images_alone() -> None:
    grey = smooth_image(1, 20, 30, 1)
    out = ops.to_uint8(ops.color_degeneration(ops.to_planes(grey), 0.8))
    assert np.array_equal(out, grey)


# -- augmix: each op through AugMix's own method, with the stage's drawn severity and sign ---------
def _am_method(kcv: Any, tf: Any, op: str, prm: dict[str, Any]) -> Callable[[Any], Any]:
    layer = kcv.layers.AugMix((0, 255))
    if "severity" in prm:
        layer.severity_factor = Script(tf, [prm["severity"]])
    if "factor" in prm or "pixels" in prm:
        negative = prm.get("factor", prm.get("pixels")) < 0
        layer._random_generator = Script(tf, [0.75 if negative else 0.25])  # random_inversion: u > 0.5 -> -1
    return getattr(layer, f"_{op}")


@pytest.mark.parametrize("op", list(augmix.POOL))
def test_augmix_op_equals_kerascv_augmix_op(tf, kcv, op: str) -> None:
    stage = augmix.AugMix.from_spec({"severity": [0.01, 1.0]}, "augmix")
    for i, image in enumerate(images()):
        for seed in range(4):
            rng = np.random.default_rng([i, seed])
            prm = {"op": "none"}
            while prm["op"] != op:
                prm = stage._draw_op(rng, image.shape)
            ours = ops.to_uint8(augmix.POOL[op][1](ops.to_planes(image), prm))
            theirs = _am_method(kcv, tf, op, prm)(tf.constant(image, tf.float32))
            assert_close(ours, theirs, f"{op} {prm} on image {i}")
            Script.assert_all_used()


# -- whole stages through the real layers, random draws replaced by the recorded ones ---------------
def _script_randaugment(kcv: Any, tf: Any, stage: randaugment.RandAugment, drawn: list[dict[str, Any]]) -> Any:
    c = stage.config
    layer = kcv.layers.RandAugment((0, 255), c["augmentations_per_image"], c["magnitude"], c["magnitude_stddev"],
                                   c["rate"], geometric=c["geometric"])
    names = stage.pool()
    assert len(layer.layers) == len(names)
    layer._random_generator = Script(tf, [2.0 if d.get("applied", True) is False else 0.0 for d in drawn])
    layer._random_choice._random_generator = Script(tf, [names.index(d["op"]) for d in drawn if "op" in d])
    by_name = dict(zip(names, layer.layers, strict=True))
    scripts = {n: {"rng": Script(tf), "f": Script(tf), "g": Script(tf)} for n in names}
    for d in (d for d in drawn if "op" in d):
        s, op = scripts[d["op"]], d["op"]
        if op == "solarize":
            s["f"].values.append(d["addition"])
            s["g"].values.append(d["threshold"])
        elif op.startswith("shear"):
            s["f"].values.append(abs(d["factor"]))
            sign = 0.75 if d["factor"] < 0 else 0.25  # batch_random_inversion: u > 0.5 -> -1
            s["rng"].values += [sign, 0.25] if op == "shear_x" else [0.25, sign]  # x's sign is drawn first
        elif op.startswith("translate"):
            s["rng"].values += [0.0, d["factor"]] if op == "translate_x" else [d["factor"], 0.0]  # height first
        elif "factor" in d:
            s["f"].values.append(d["factor"])
    for name, sub in by_name.items():
        sub._random_generator = scripts[name]["rng"]
        attrs = {"solarize": ("addition_factor", "threshold_factor"), "shear_x": ("x_factor",),
                 "shear_y": ("y_factor",)}.get(name, ("factor",))
        for attr, key in zip(attrs, ("f", "g"), strict=False):
            if hasattr(sub, attr):
                setattr(sub, attr, scripts[name][key])
    return layer


@pytest.mark.parametrize("spec", [
    {"augmentations_per_image": 4, "magnitude": 0.6, "magnitude_stddev": 0.3, "rate": 0.8},
    {"augmentations_per_image": 3, "magnitude": 0.3, "rate": 1.0, "geometric": False},
])
def test_randaugment_stage_equals_kerascv_randaugment(tf, kcv, spec: dict) -> None:
    stage = randaugment.RandAugment.from_spec(spec, "randaugment")
    for copy in range(12):
        image = images()[copy % 3]
        params = stage.draw(example_rng(1, "x.png", copy), image.shape)
        theirs = _script_randaugment(kcv, tf, stage, params["ops"])(tf.constant(image, tf.float32))
        assert_close(stage.run(image, params), theirs, f"randaugment {params}")
        Script.assert_all_used()


def _script_augmix(kcv: Any, tf: Any, stage: augmix.AugMix, params: dict[str, Any]) -> Any:
    c = stage.config
    layer = kcv.layers.AugMix((0, 255), c["severity"], c["num_chains"], c["chain_depth"], c["alpha"])
    names, draws, severities = list(augmix.POOL), [], []
    for chain in params["chains"]:
        draws.append(len(chain))
        for prm in chain:
            draws.append(names.index(prm["op"]))
            if "severity" in prm:
                severities.append(prm["severity"])
            if "factor" in prm or "pixels" in prm:
                draws.append(0.75 if prm.get("factor", prm.get("pixels")) < 0 else 0.25)
    layer._random_generator = Script(tf, draws)
    layer.severity_factor = Script(tf, severities)
    return layer


@pytest.mark.parametrize("spec", [
    {"severity": 0.5, "num_chains": 3, "chain_depth": [1, 3], "alpha": 1.0},
    {"severity": [0.2, 0.9], "num_chains": 4, "chain_depth": 2, "alpha": 0.5},
])
def test_augmix_stage_equals_kerascv_augmix(tf, kcv, spec: dict) -> None:
    stage = augmix.AugMix.from_spec(spec, "augmix")
    for copy in range(9):
        image = images()[copy % 3]
        params = stage.draw(example_rng(2, "x.png", copy), image.shape)
        layer = _script_augmix(kcv, tf, stage, params)
        transformation = {"chain_mixing_weights": tf.constant(params["chain_weights"], tf.float32),
                          "weight_sample": tf.constant(params["mix_weight"], tf.float32)}
        theirs = layer.augment_image(tf.constant(image, tf.float32), transformation=transformation)
        assert_close(stage.run(image, params), theirs, f"augmix {params}")
        Script.assert_all_used()
