"""random_resized_crop: torchvision's get_params (ported below from its source as the reference),
box properties, the fallback, the sampled distributions (KS), tf.image.resize as the oracle of the
crop + resize, validation paths, and replay from exported records."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from augexport import api
from augexport.errors import ConfigError
from augexport.pipeline import build_pipeline
from augexport.stages import builtin_stages
from augexport.stages.random_resized_crop import central_fallback, crop_and_resize, sample_crop_box
from tests.conftest import make_class_folder, smooth_image
from tests.helpers import read_records

RRC = builtin_stages()["random_resized_crop"]


def torchvision_get_params(rng: np.random.Generator, height: int, width: int, scale: list[float],
                           ratio: list[float], attempts: int = 10) -> tuple[int, int, int, int]:
    """torchvision.transforms.RandomResizedCrop.get_params, line by line, with torch's draws replaced
    by the same numpy draws in the same order: (i, j, h, w)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(attempts):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.integers(0, height - h + 1))
            j = int(rng.integers(0, width - w + 1))
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return i, j, h, w


def _gen(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(seed))


CASES = [  # (H, W, scale, ratio): defaults, non-square, narrow ranges, ones that mostly fall back
    (224, 224, [0.08, 1.0], [3 / 4, 4 / 3]),
    (37, 90, [0.08, 1.0], [3 / 4, 4 / 3]),
    (120, 45, [0.25, 1.0], [0.5, 2.0]),
    (9, 13, [0.08, 1.0], [3 / 4, 4 / 3]),
    (10, 200, [0.9, 1.0], [3 / 4, 4 / 3]),
    (200, 10, [0.9, 1.0], [3 / 4, 4 / 3]),
    (64, 64, [1.0, 1.0], [2.0, 3.0]),
]


@pytest.mark.parametrize(("height", "width", "scale", "ratio"), CASES)
def test_boxes_equal_torchvision_get_params(height: int, width: int, scale: list[float], ratio: list[float]) -> None:
    fallbacks = 0
    for seed in range(300):
        box, fallback = sample_crop_box(_gen(seed), height, width, scale, ratio, 10)
        i, j, h, w = torchvision_get_params(_gen(seed), height, width, scale, ratio)
        assert box == [i, j, i + h, j + w], seed
        fallbacks += fallback
    if (height, width) in ((10, 200), (200, 10), (64, 64)):
        assert fallbacks == 300
    elif height == width:  # 10 failures in a row on a square: ~1e-8
        assert fallbacks == 0


@pytest.mark.parametrize(("height", "width", "scale", "ratio"), CASES[:4])
def test_box_properties(height: int, width: int, scale: list[float], ratio: list[float]) -> None:
    """Inside the image; area fraction and w/h in range up to the rounding of each side (±0.5 px)."""
    area = height * width
    for seed in range(500):
        (y0, x0, y1, x1), fallback = sample_crop_box(_gen(seed), height, width, scale, ratio, 10)
        assert 0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width
        h, w = y1 - y0, x1 - x0
        if fallback:
            continue
        assert (h - 0.5) * (w - 0.5) / area <= scale[1] and (h + 0.5) * (w + 0.5) / area >= scale[0]
        assert (w - 0.5) / (h + 0.5) <= ratio[1] and (w + 0.5) / (h - 0.5) >= ratio[0]


def test_fallback_is_the_centred_crop_clamped_to_the_ratio() -> None:
    assert central_fallback(10, 200, [3 / 4, 4 / 3]) == [0, 93, 10, 106]  # too wide: h = H, w = round(H · 4/3) = 13
    assert central_fallback(200, 10, [3 / 4, 4 / 3]) == [93, 0, 106, 10]  # too tall: w = W, h = round(W / (3/4)) = 13
    assert central_fallback(50, 60, [3 / 4, 4 / 3]) == [0, 0, 50, 60]  # in range: the whole image
    assert central_fallback(64, 64, [2.0, 3.0]) == [16, 0, 48, 64]
    # scale [1, 1] with a ratio the square cannot hold: no attempt fits, the fallback is taken
    assert sample_crop_box(_gen(0), 64, 64, [1.0, 1.0], [2.0, 3.0], 10) == ([16, 0, 48, 64], True)


@pytest.mark.parametrize("shape,ratio,interpolation", [((7, 211, 3), [0.01, 0.02], "bilinear"),
                                                     ((1, 1, 3), [4.0, 5.0], "bilinear"),
                                                     ((5, 3, 1), [10.0, 20.0], "nearest")])
def test_a_ratio_that_rounds_the_fallback_to_nothing_keeps_one_pixel(shape: tuple, ratio: list[float],
                                                                     interpolation: str) -> None:
    """torchvision's formula rounds a side to 0 here; the crop keeps 1 pixel instead of failing."""
    y0, x0, y1, x1 = central_fallback(shape[0], shape[1], ratio)
    assert y1 - y0 >= 1 and x1 - x0 >= 1
    st = build_pipeline({"stages": [{"random_resized_crop": {"ratio": ratio, "max_attempts": 1,
                                                             "interpolation": interpolation}}]}).stages[0]
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for seed in range(5):
        out = st.apply(image, st.sample(np.random.default_rng(seed), shape))
        assert out.shape == image.shape and out.dtype == np.uint8


def test_area_is_uniform_and_ratio_log_uniform_ks() -> None:
    # every attempt fits on this large square (max side sqrt(0.5 · 4/3) < 1), so the first draw is kept
    # and the box is the drawn (s, r) up to 1/4000 rounding
    n, side, scale, ratio = 4000, 4000, [0.08, 0.5], [3 / 4, 4 / 3]
    areas, log_ratios, ratios = [], [], []
    for seed in range(n):
        (y0, x0, y1, x1), fallback = sample_crop_box(_gen(seed), side, side, scale, ratio, 10)
        assert not fallback
        areas.append((y1 - y0) * (x1 - x0) / side**2)
        log_ratios.append(math.log((x1 - x0) / (y1 - y0)))
        ratios.append((x1 - x0) / (y1 - y0))
    assert stats.kstest(areas, "uniform", args=(scale[0], scale[1] - scale[0])).pvalue > 0.01
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    assert stats.kstest(log_ratios, "uniform", args=(lo, hi - lo)).pvalue > 0.01
    # the test has power: the ratio itself is not uniform (torchvision draws its log)
    assert stats.kstest(ratios, "uniform", args=(ratio[0], ratio[1] - ratio[0])).pvalue < 1e-4


@pytest.fixture(scope="module")
def tf():  # the tensorflow module
    return pytest.importorskip("tensorflow")


def test_crop_and_resize_matches_tf_image_resize(tf) -> None:
    """Bilinear: within 1 level, on under 0.5% of values (float32 rounding at .5 between OpenCV and TF);
    nearest: exact."""
    differing = total = 0
    for seed in range(120):
        rng = _gen(seed)
        h, w, c = int(rng.integers(8, 100)), int(rng.integers(8, 100)), (1, 3)[seed % 2]
        image = smooth_image(seed, h, w, c) if seed % 3 else rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        box, _ = sample_crop_box(rng, h, w, [0.08, 1.0], [3 / 4, 4 / 3], 10)
        y0, x0, y1, x1 = box
        crop = image[y0:y1, x0:x1]
        expected = np.clip(np.rint(tf.image.resize(crop, (h, w)).numpy()), 0, 255).astype(np.int16)
        out = crop_and_resize(image, box, "bilinear")
        assert out.shape == image.shape and out.dtype == np.uint8
        diff = np.abs(out.astype(np.int16) - expected)
        assert diff.max() <= 1
        differing += int((diff > 0).sum())
        total += diff.size
        nearest = tf.image.resize(crop, (h, w), method="nearest").numpy()
        np.testing.assert_array_equal(crop_and_resize(image, box, "nearest"), nearest)
    assert differing / total < 0.005


def test_whole_image_box_is_the_identity_and_p_skips() -> None:
    image = smooth_image(4, 21, 34)
    for interpolation in ("bilinear", "nearest"):
        np.testing.assert_array_equal(crop_and_resize(image, [0, 0, 21, 34], interpolation), image)
    stage = RRC.from_spec({"p": 0.5}, "x")
    draws = [stage.draw(_gen(s), image.shape) for s in range(200)]
    assert 70 < sum(d["applied"] for d in draws) < 130
    assert all(set(d) == {"applied", "box", "fallback"} for d in draws if d["applied"])


@pytest.mark.parametrize(("spec", "path", "words"), [
    ({"scale": [0, 1]}, "scale[0]", "out of range; accepted: (0, 1]"),
    ({"scale": [0.5, 1.5]}, "scale[1]", "out of range; accepted: (0, 1]"),
    ({"scale": [0.9, 0.1]}, "scale", "low 0.9 is greater than high 0.1"),
    ({"scale": 0.5}, "scale", "expected a 2-list"),
    ({"ratio": [0, 2]}, "ratio[0]", "accepted: [0.0001, 10000]"),
    ({"ratio": [1, 10001]}, "ratio[1]", "accepted: [0.0001, 10000]"),
    ({"ratio": [2, 1]}, "ratio", "greater than high"),
    ({"interpolation": "bicubic"}, "interpolation", "accepted: bilinear, nearest"),
    ({"max_attempts": 0}, "max_attempts", "out of range"),
    ({"size": 224}, "size", "unknown key; accepted: scale, ratio"),
])
def test_validation_names_the_path(spec: dict, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_pipeline({"stages": [{"cutout": {}}, {"random_resized_crop": spec}]})
    assert f"stages[1].random_resized_crop.{path}: " in str(err.value) and words in str(err.value)


@pytest.mark.parametrize(("text", "words"), [
    ("ratio: [1.0e-308, 1.0e-300]", "ratio[0]: 1e-308 is out of range; accepted: [0.0001, 10000]"),
    ("ratio: [1, 1.0e+300]", "ratio[1]: 1e+300 is out of range; accepted: [0.0001, 10000]"),
])
def test_absurd_ratio_is_a_config_error_through_the_cli(tmp_path: Path, text: str, words: str) -> None:
    """Once a raw OverflowError of the dry run (area / ratio = inf); now the key and its range."""
    from tests.test_config_errors import assert_stage_config_error

    assert_stage_config_error(tmp_path, f"random_resized_crop: {{{text}}}", f"random_resized_crop.{words}")


def test_extreme_accepted_ratios_draw_and_fall_back() -> None:
    """The ratio bounds themselves never overflow, on a tiny image and a long one."""
    for ratio in ([0.0001, 0.0001], [10000, 10000], [0.0001, 10000]):
        for h, w in ((1, 1), (3, 16384), (4000, 4000)):
            box, _ = sample_crop_box(np.random.default_rng(0), h, w, [0.01, 1.0], ratio, 10)
            y0, x0, y1, x1 = box
            assert 0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w


def test_exported_copies_have_image_size_and_replay(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2}, size=(30, 44))
    out = tmp_path / "out"
    spec = {"scale": [0.2, 0.8]}
    api.export(str(src), out, encoding="png", workers=1,
               overrides={"copies": 2, "image_size": [24, 32], "stages": [{"random_resized_crop": spec}]})
    stage = RRC.from_spec(spec, "x")
    originals = {r["source_id"][0]: np.asarray(Image.open(io.BytesIO(r["image"][0])))
                 for r in read_records(out) if r["copy"][0] == 0}
    n = 0
    for rec in read_records(out):
        pixels = np.asarray(Image.open(io.BytesIO(rec["image"][0])))
        assert pixels.shape == (24, 32, 3)
        if rec["copy"][0] == 0:
            continue
        (entry,) = json.loads(rec["params"][0])
        assert entry["stage"] == "random_resized_crop"
        np.testing.assert_array_equal(pixels, stage.run(originals[rec["source_id"][0]], entry["params"]))
        n += 1
    assert n == 8
