"""The compiled imgaug run gives the bytes imgaug itself gives, seed for seed.

`imgaug_compiled.compile_tree` mirrors imgaug's draws and calls its kernels without its per-call
machinery; these tests hold it to imgaug (`TreeSeeder` + `augment_one`, itself checked against
`seed_` and `aug(image=...)` in test_imgaug.py) over random specs of the mirrored augmenters and
their parameter forms, with augmenters it does not mirror mixed in, on 1-, 3- and 4-channel
images.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from augexport.imgaug_compat import TreeSeeder, augment_one, import_imgaug
from augexport.imgaug_compiled import compile_tree, draws_32_bits
from augexport.specfile import load_yaml
from augexport.stages.imgaug_stage import Imgaug, build_sequence

ROOT = Path(__file__).resolve().parents[1]


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:29, 0:37]
    smooth = np.stack([(xx * 7 + yy * 3) % 256, (xx * yy) % 256, (255 - xx * 5) % 256], -1).astype(np.uint8)
    noisy = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
    return [smooth, noisy, noisy[..., :1].copy(), np.concatenate([smooth[:20, :26], noisy[..., :1]], -1),
            rng.integers(0, 256, (1, 9, 3), dtype=np.uint8)]


def _range(r: random.Random, low: float, high: float) -> Any:
    pick = r.randrange(4)
    if pick == 0:
        return round(r.uniform(low, high), 3)
    if pick == 1:
        a, b = sorted((round(r.uniform(low, high), 3), round(r.uniform(low, high), 3)))
        return [a, b]
    if pick == 2:
        return {"choice": [round(r.uniform(low, high), 3) for _ in range(3)]}
    return [high, low]  # reversed bounds: imgaug swaps them


def _affine(r: random.Random) -> dict[str, Any]:
    args: dict[str, Any] = {}
    if r.random() < 0.7:
        args["rotate"] = _range(r, -30, 30)
    if r.random() < 0.5:
        args["scale"] = _range(r, 0.7, 1.3) if r.random() < 0.5 else {"x": _range(r, 0.8, 1.2), "y": _range(r, 0.8, 1.2)}
    move = r.randrange(4)
    if move == 1:
        args["translate_percent"] = _range(r, -0.2, 0.2)
    elif move == 2:
        args["translate_percent"] = {"x": _range(r, -0.1, 0.1), "y": _range(r, -0.1, 0.1)}
    elif move == 3:
        args["translate_px"] = r.choice([[-4, 4], {"x": [-3, 3], "y": 2}, 3])
    if r.random() < 0.4:
        args["shear"] = _range(r, -15, 15) if r.random() < 0.6 else {"x": _range(r, -10, 10), "y": _range(r, -10, 10)}
    if r.random() < 0.3:
        args["order"] = r.choice([0, 1, 3, 2, 5, {"choice": [0, 1]}])  # 2 and 5: the skimage backend
    if r.random() < 0.3:
        args["cval"] = r.choice([0, 200, [0, 255], [10.5, 99.5], {"choice": [10, 90]}])
    if r.random() < 0.3:
        args["mode"] = r.choice(["edge", "reflect", {"choice": ["constant", "edge", "symmetric", "wrap"]}])
    if r.random() < 0.15:
        args["fit_output"] = True
    return {"Affine": args}


def _leaf(r: random.Random) -> dict[str, Any]:
    kind = r.randrange(10)
    if kind == 0:
        return {"Fliplr": {"p": r.choice([0.5, 1.0, 0.0, 0.3])}}
    if kind == 1:
        return {"Flipud": {"p": r.choice([0.5, 1.0])}}
    if kind in (2, 3):
        return _affine(r)
    if kind == 4:
        return {"Multiply": {"mul": _range(r, 0.6, 1.4), "per_channel": r.choice([False, True, 0.5])}}
    if kind == 5:
        return {"GaussianBlur": {"sigma": _range(r, 0.0, 1.5)}}
    if kind == 6:
        return r.choice([{"Rotate": {"rotate": [-30, 30]}}, {"ScaleX": {"scale": [0.8, 1.2]}},
                         {"TranslateY": {"percent": [-0.1, 0.1]}}, {"ShearX": {"shear": [-10, 10]}}])
    # not mirrored: imgaug runs these itself, inside a compiled tree
    return r.choice([{"Add": {"value": [-20, 20]}}, {"LinearContrast": {"alpha": [0.7, 1.3]}},
                     {"Crop": {"percent": [0, 0.1]}}, {"Dropout": {"p": [0.0, 0.1]}}])


def _step(r: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and r.random() < 0.2:
        container = r.choice(["Sequential", "Sometimes", "SomeOf"])
        children = [_step(r, depth + 1) for _ in range(r.randint(1, 3))]
        if container == "Sequential":
            return {"Sequential": {"children": children, "random_order": r.random() < 0.5}}
        if container == "Sometimes":
            args: dict[str, Any] = {"p": r.choice([0.5, 0.3, 1.0]), "then": children}
            if r.random() < 0.5:
                args["else"] = [_step(r, depth + 1)]
            return {"Sometimes": args}
        return {"SomeOf": {"n": [1, len(children)], "children": children}}
    step = _leaf(r)
    if r.random() < 0.3 and "p" not in next(iter(step.values())):
        next(iter(step.values()))["p"] = r.choice([0.5, 0.7])
    return step


def _imgaug_result(aug: Any, image: np.ndarray, seed: int) -> np.ndarray:
    TreeSeeder(aug)(seed)
    return augment_one(aug, image)


def _assert_same(aug: Any, run: Any, image: np.ndarray, seed: int, where: str) -> None:
    expected = _imgaug_result(aug, image, seed)
    got = run(image, seed)
    assert got is not None, where
    assert got.shape == expected.shape and got.dtype == expected.dtype, where
    assert np.array_equal(got, expected), where


def test_random_specs_match_imgaug_byte_for_byte() -> None:
    r = random.Random(20261201)
    images = _images()
    for case in range(220):
        spec = [_step(r) for _ in range(r.randint(1, 4))]
        aug = build_sequence(spec, "imgaug")
        run = compile_tree(aug)
        for image in images:
            for seed in (r.randrange(2**63 - 1), case):
                original = image.copy()
                _assert_same(aug, run, image, seed, f"case {case}: {spec} on {image.shape}, seed {seed}")
                assert np.array_equal(image, original), "the input image was changed"


def test_many_seeds_of_the_benchmark_pipeline_match() -> None:
    spec = [{"Fliplr": {"p": 0.5}}, {"Affine": {"rotate": [-20, 20]}}, {"Multiply": {"mul": [0.8, 1.2]}},
            {"GaussianBlur": {"sigma": [0.0, 1.0], "p": 0.3}}]
    aug = build_sequence(spec, "imgaug")
    run = compile_tree(aug)
    image = _images()[0]
    for seed in range(400):
        _assert_same(aug, run, image, seed, f"seed {seed}")


def test_mirrored_augmenters_do_not_fall_back_to_imgaug(monkeypatch: pytest.MonkeyPatch) -> None:
    """The speed-up is real only if the common augmenters are mirrored, not handed back."""
    import augexport.imgaug_compiled as compiled

    def refuse(aug: Any) -> Any:
        raise AssertionError(f"{type(aug).__name__} fell back to imgaug")

    monkeypatch.setattr(compiled, "_imgaug_itself", refuse)
    spec = [{"Fliplr": {"p": 0.5}}, {"Flipud": {"p": 0.2}}, {"Rotate": {"rotate": [-9, 9]}},
            {"Affine": {"scale": {"x": [0.9, 1.1], "y": 1.0}, "translate_px": [-3, 3], "mode": {"choice": ["edge", "wrap"]},
                        "cval": [0, 255], "order": {"choice": [0, 1]}}},
            {"Sequential": {"children": [{"Multiply": {"mul": [0.8, 1.2], "per_channel": 0.5}}], "random_order": True}},
            {"Sometimes": {"p": 0.5, "then": [{"GaussianBlur": {"sigma": [0.0, 1.0]}}],
                           "else": [{"Multiply": {"mul": {"choice": [0.9, 1.1]}}}]}}]
    assert compile_tree(build_sequence(spec, "imgaug"))(_images()[0], 5) is not None


def test_sample_imgaug_pipeline_matches_with_unmirrored_subtrees() -> None:
    config = load_yaml((ROOT / "sample_data" / "imgaug.yaml").read_text())
    spec = next(stage["imgaug"] for stage in config["stages"] if "imgaug" in stage)
    aug = build_sequence(spec, "imgaug")
    run = compile_tree(aug)
    image = np.ascontiguousarray(np.tile(_images()[0], (2, 2, 1)))
    for seed in range(60):
        _assert_same(aug, run, image, seed, f"seed {seed}")


def test_stage_runs_imgaug_where_the_compiled_run_declines() -> None:
    stage = Imgaug.from_spec([{"Fliplr": {"p": 1.0}}, {"GaussianBlur": {"sigma": 1.0}}], "imgaug")
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)  # 2-D: not HxWxC, so imgaug runs
    assert stage._compiled is None
    out = stage.apply(grey, {"seed": 3})
    assert np.array_equal(out, _imgaug_result(stage.augmenter, grey, 3))
    rgb = _images()[1]
    assert np.array_equal(stage.apply(rgb, {"seed": 3}), _imgaug_result(stage.augmenter, rgb, 3))


def test_stage_pickles_after_use_and_gives_the_same_bytes() -> None:
    import pickle

    stage = Imgaug.from_spec([{"Affine": {"rotate": [-20, 20]}}, {"Multiply": {"mul": [0.8, 1.2]}}], "imgaug")
    image = _images()[0]
    before = stage.apply(image, {"seed": 11})
    copy = pickle.loads(pickle.dumps(stage))
    assert np.array_equal(copy.apply(image, {"seed": 11}), before)


def test_results_do_not_depend_on_what_ran_before() -> None:
    aug = build_sequence([{"Affine": {"rotate": [-20, 20], "translate_px": [-3, 3]}},
                          {"Sometimes": {"p": 0.5, "then": [{"Add": {"value": [-9, 9]}}]}}], "imgaug")
    run = compile_tree(aug)
    image = _images()[0]
    first = [run(image, seed) for seed in range(20)]
    again = [run(image, seed) for seed in reversed(range(20))][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_only_integer_draws_need_the_exact_generator_advance() -> None:
    import_imgaug()
    import imgaug.parameters as iap

    assert not draws_32_bits(iap.Uniform(0.0, 1.0))
    assert not draws_32_bits(iap.Binomial(0.5))
    assert draws_32_bits(iap.DiscreteUniform(0, 5))
    assert draws_32_bits(iap.Choice(["edge", "constant"]))
    assert draws_32_bits(iap.Uniform(iap.DiscreteUniform(0, 3), 5.0))
