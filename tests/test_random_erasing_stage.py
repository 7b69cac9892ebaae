"""random_erasing: timm's box sampler (ported below from timm's random_erasing.py as the reference;
timm is not installed here), box and count properties, the sampled distributions (KS), the fills in
pixel units, validation paths, and replay from exported records."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from augexport import api
from augexport.errors import ConfigError
from augexport.pipeline import build_pipeline
from augexport.stages import builtin_stages
from tests.conftest import make_class_folder, smooth_image
from tests.helpers import read_records

ERASING = builtin_stages()["random_erasing"]


def timm_erase_boxes(rng: np.random.Generator, img_h: int, img_w: int, probability: float, min_area: float,
                     max_area: float, min_aspect: float, max_aspect: float, min_count: int,
                     max_count: int) -> list[list[int]] | None:
    """timm.data.random_erasing.RandomErasing._erase's box logic, line by line, with Python's `random`
    replaced by the same numpy draws in the same order (random.randint(a, b) is inclusive).
    None when the coin says no erasing."""
    if probability < 1.0 and rng.random() > probability:
        return None
    log_aspect_ratio = (math.log(min_aspect), math.log(max_aspect))
    area = img_h * img_w
    count = min_count if min_count == max_count else int(rng.integers(min_count, max_count + 1))
    boxes = []
    for _ in range(count):
        for _attempt in range(10):
            target_area = rng.uniform(min_area, max_area) * area / count
            aspect_ratio = math.exp(rng.uniform(*log_aspect_ratio))
            h = int(round(math.sqrt(target_area * aspect_ratio)))
            w = int(round(math.sqrt(target_area / aspect_ratio)))
            if w < img_w and h < img_h:
                top = int(rng.integers(0, img_h - h + 1))
                left = int(rng.integers(0, img_w - w + 1))
                boxes.append([top, left, top + h, left + w])
                break
    return boxes


def _gen(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


def _stage(**config: Any) -> Any:
    return ERASING.from_spec(config, "stages[0].random_erasing")


CASES = [  # (H, W, stage config)
    (224, 224, {}),
    (37, 90, {"p": 1.0, "max_count": 4}),
    (120, 45, {"p": 0.7, "min_count": 2, "max_count": 3, "scale": [0.1, 0.6], "ratio": [0.5, 4.0]}),
    (6, 5, {"p": 1.0, "max_count": 2, "scale": [0.3, 0.9]}),  # tiny: many attempts fail
]


@pytest.mark.parametrize(("height", "width", "config"), CASES)
def test_boxes_equal_timm(height: int, width: int, config: dict) -> None:
    stage = _stage(**config)
    c = stage.config
    skipped = 0
    for seed in range(300):
        params = stage.draw(_gen(seed), (height, width, 3))
        expected = timm_erase_boxes(_gen(seed), height, width, c["p"], *c["scale"], *c["ratio"],
                                    c["min_count"], c["max_count"])
        if expected is None:
            assert params == {"applied": False}
            skipped += 1
            continue
        assert params["boxes"] == expected, seed
    assert (skipped > 0) == (c["p"] < 1)


@pytest.mark.parametrize(("height", "width", "config"), CASES)
def test_box_and_count_properties(height: int, width: int, config: dict) -> None:
    stage = _stage(**{**config, "p": 1.0})
    c = stage.config
    counts = set()
    for seed in range(400):
        params = stage.draw(_gen(seed), (height, width, 3))
        count = params["count"]
        counts.add(count)
        assert c["min_count"] <= count <= c["max_count"] and len(params["boxes"]) <= count
        share = height * width / count  # the box area budget is divided by the count, as timm does
        for y0, x0, y1, x1 in params["boxes"]:
            assert 0 <= y0 <= y1 <= height and 0 <= x0 <= x1 <= width
            h, w = y1 - y0, x1 - x0
            assert h < height and w < width  # timm's strict test
            if h == 0 or w == 0:  # a side rounded to 0 on a tiny image: nothing erased
                continue
            assert (h - 0.5) * (w - 0.5) / share <= c["scale"][1] and (h + 0.5) * (w + 0.5) / share >= c["scale"][0]
            assert (h - 0.5) / (w + 0.5) <= c["ratio"][1] and (h + 0.5) / (w - 0.5) >= c["ratio"][0]
    assert counts == set(range(c["min_count"], c["max_count"] + 1))


def test_area_is_uniform_and_ratio_log_uniform_ks() -> None:
    # every attempt fits on this large square (max side sqrt(0.25 · 3.3) < 1): the box is the first draw
    stage = _stage(p=1.0, scale=[0.02, 0.25], ratio=[0.3, 3.3], max_count=2, min_count=2)
    side, areas, log_ratios, ratios = 4000, [], [], []
    for seed in range(2000):
        params = stage.draw(_gen(seed), (side, side, 3))
        assert len(params["boxes"]) == 2
        for y0, x0, y1, x1 in params["boxes"]:
            areas.append((y1 - y0) * (x1 - x0) / (side**2 / 2))
            log_ratios.append(math.log((y1 - y0) / (x1 - x0)))
            ratios.append((y1 - y0) / (x1 - x0))
    assert stats.kstest(areas, "uniform", args=(0.02, 0.23)).pvalue > 0.01
    lo, hi = math.log(0.3), math.log(3.3)
    assert stats.kstest(log_ratios, "uniform", args=(lo, hi - lo)).pvalue > 0.01
    assert stats.kstest(ratios, "uniform", args=(0.3, 3.0)).pvalue < 1e-4  # the test has power


def _inside(shape: tuple[int, ...], boxes: list[list[int]]) -> np.ndarray:
    mask = np.zeros(shape[:2], bool)
    for y0, x0, y1, x1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def test_const_fills_the_mean_colour_and_collapses_to_luma_on_grey() -> None:
    stage = _stage(p=1.0, max_count=3)
    for channels, fill in ((3, [124, 116, 104]), (1, [117])):  # ImageNet mean in pixels; its luma 117.03
        image = smooth_image(2, 60, 80, channels)
        for seed in range(30):
            params = stage.draw(_gen(seed), image.shape)
            out = stage.run(image, json.loads(json.dumps(params)))
            mask = _inside(image.shape, params["boxes"])
            assert mask.any() and np.all(out[mask] == fill)
            np.testing.assert_array_equal(out[~mask], image[~mask])
    custom = _stage(p=1.0, mean=0)
    params = custom.draw(_gen(0), (40, 40, 3))
    assert np.all(custom.run(smooth_image(1, 40, 40), params)[_inside((40, 40), params["boxes"])] == 0)


def test_rand_fills_one_recorded_normal_colour_per_box() -> None:
    stage = _stage(p=1.0, mode="rand", mean=[100, 128, 150], std=20, max_count=2)
    image = smooth_image(3, 50, 70)
    colours = []
    for seed in range(400):
        params = stage.draw(_gen(seed), image.shape)
        expected = image.copy()
        for (y0, x0, y1, x1), colour in zip(params["boxes"], params["colors"], strict=True):
            expected[y0:y1, x0:x1] = colour  # painted in order: a later box covers an earlier one
            colours.append(colour)
        np.testing.assert_array_equal(stage.run(image, params), expected)
    c = np.asarray(colours, float)
    assert np.all(np.abs(c.mean(axis=0) - [100, 128, 150]) < 2) and np.all(np.abs(c.std(axis=0) - 20) < 1.5)


def test_pixel_noise_is_seeded_normal_noise() -> None:
    stage = _stage(p=1.0, mode="pixel", mean=127.5, std=30, scale=[0.2, 0.3])
    image = smooth_image(4, 64, 64)
    params = stage.draw(_gen(5), image.shape)
    out = stage.run(image, params)
    np.testing.assert_array_equal(out, stage.run(image, json.loads(json.dumps(params))))
    mask = _inside(image.shape, params["boxes"])
    noise = out[mask].astype(float)
    assert abs(noise.mean() - 127.5) < 1.5 and abs(noise.std() - 30) < 1.5
    np.testing.assert_array_equal(out[~mask], image[~mask])
    other = stage.run(image, {**params, "noise_seed": params["noise_seed"] + 1})
    assert not np.array_equal(other[mask], out[mask])


@pytest.mark.parametrize(("spec", "path", "words"), [
    ({"scale": [0, 0.3]}, "scale[0]", "out of range; accepted: (0, 1]"),
    ({"scale": [0.4, 0.1]}, "scale", "low 0.4 is greater than high 0.1"),
    ({"ratio": [-1, 2]}, "ratio[0]", "accepted: [0.0001, 10000]"),
    ({"ratio": [0.5, 20000]}, "ratio[1]", "accepted: [0.0001, 10000]"),
    ({"mode": "random"}, "mode", "accepted: const, rand, pixel; did you mean rand"),
    ({"min_count": 3, "max_count": 2}, "max_count", "2 is less than min_count (3)"),
    ({"max_count": 0}, "max_count", "out of range"),
    ({"mean": [1, 2]}, "mean", "accepted: a number in [0, 255] or a list of 3 numbers"),
    ({"std": [1, 2, 300]}, "std[2]", "out of range; accepted: [0, 255]"),
    ({"mean": "imagenet"}, "mean", "accepted: a number in [0, 255] or a list of 3"),
    ({"value": 0}, "value", "unknown key; accepted: p, scale, ratio, mode"),
])
def test_validation_names_the_path(spec: dict, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_pipeline({"stages": [{"cutout": {}}, {"random_erasing": spec}]})
    assert f"stages[1].random_erasing.{path}: " in str(err.value) and words in str(err.value)


@pytest.mark.parametrize(("text", "words"), [
    ("ratio: [1.0e-308, 1.0e-300]", "ratio[0]: 1e-308 is out of range; accepted: [0.0001, 10000]"),
    ("ratio: [0.5, 1.0e+300]", "ratio[1]: 1e+300 is out of range; accepted: [0.0001, 10000]"),
])
def test_absurd_ratio_is_a_config_error_through_the_cli(tmp_path: Path, text: str, words: str) -> None:
    """Once a raw OverflowError of the dry run (area / ratio = inf); now the key and its range."""
    from tests.test_config_errors import assert_stage_config_error

    assert_stage_config_error(tmp_path, f"random_erasing: {{p: 1.0, {text}}}", f"random_erasing.{words}")


def test_exported_params_replay_the_pixels(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    out = tmp_path / "out"
    specs = [{"random_erasing": {"p": 1.0, "mode": "rand", "max_count": 2}},
             {"random_erasing": {"p": 1.0, "mode": "pixel"}}]
    api.export(str(src), out, encoding="png", workers=1, overrides={"copies": 2, "stages": specs})
    stages = [ERASING.from_spec(s["random_erasing"], "x") for s in specs]
    originals = {r["source_id"][0]: np.asarray(Image.open(io.BytesIO(r["image"][0])))
                 for r in read_records(out) if r["copy"][0] == 0}
    n = 0
    for rec in read_records(out):
        if rec["copy"][0] == 0:
            continue
        entries = json.loads(rec["params"][0])
        replay = stages[1].run(stages[0].run(originals[rec["source_id"][0]], entries[0]["params"]), entries[1]["params"])
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(rec["image"][0]))), replay)
        n += 1
    assert n == 8
