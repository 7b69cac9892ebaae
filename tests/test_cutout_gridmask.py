"""Cutout and GridMask: sampled params, pure kernels, validation, and replay from exported records."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from augexport import api
from augexport.errors import ConfigError
from augexport.manifest import read_manifest
from augexport.pipeline import build_pipeline
from augexport.records import decode_example, read_tfrecords
from augexport.stages import builtin_stages
from augexport.stages.gridmask import grid_mask

STAGES = builtin_stages()


def stage(name: str, **config: Any) -> Any:
    return STAGES[name].from_spec(config, name)


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.Generator(np.random.PCG64(seed)).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- cutout ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("height", "width"), [(37, 90), (120, 45)])
def test_cutout_boxes_pixels_and_no_in_place_change(height: int, width: int) -> None:
    cut = stage("cutout", size=0.3, count=3, fill=127.5)
    side = round(0.3 * min(height, width))
    image = noise(height, width)
    keep = image.copy()
    for draw in range(300):
        params = cut.draw(np.random.Generator(np.random.PCG64(draw)), image.shape)
        assert params["applied"] is True and len(params["boxes"]) == 3
        inside = np.zeros((height, width), bool)
        for y0, x0, y1, x1 in params["boxes"]:
            assert 0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width
            assert y1 - y0 <= side and x1 - x0 <= side
            if 0 < y0 and y1 < height:
                assert y1 - y0 == side
            if 0 < x0 and x1 < width:
                assert x1 - x0 == side
            inside[y0:y1, x0:x1] = True
        out = cut.run(image, params)
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert np.all(out[inside] == 128)  # 127.5 rounds, it is not truncated
        assert np.array_equal(out[~inside], image[~inside])
    assert np.array_equal(image, keep)


def test_cutout_probability_and_validation() -> None:
    cut = stage("cutout", p=0.3)
    image = noise(20, 30)
    applied = 0
    for draw in range(400):
        params = cut.draw(np.random.Generator(np.random.PCG64(draw)), image.shape)
        applied += params["applied"]
        if not params["applied"]:
            assert params == {"applied": False} and cut.run(image, params) is image
    assert abs(applied / 400 - 0.3) < 0.08
    with pytest.raises(ConfigError, match=r"stages\[0\]\.cutout\.size"):
        build_pipeline({"stages": [{"cutout": {"size": 0}}]})
    with pytest.raises(ConfigError, match=r"stages\[0\]\.cutout\.count"):
        build_pipeline({"stages": [{"cutout": {"count": 0}}]})
    with pytest.raises(ConfigError, match="did you mean size"):
        build_pipeline({"stages": [{"cutout": {"sise": 0.2}}]})


@pytest.mark.parametrize("name", ["cutout", "random_erasing", "random_resized_crop"])
def test_ops_int_ranges_are_the_ones_enforced(name: str) -> None:
    """`augexport ops` shows each integer parameter's real range: its ends are accepted and one past
    them is refused (cutout.count said "int >= 1" while 65 was refused)."""
    from augexport.ops import format_ops

    text = format_ops(name)
    ints = [p for p in STAGES[name].schema if p.kind.startswith("int")]
    assert ints and "int >= " not in text
    for p in ints:
        bounds = re.fullmatch(r"int in \[(\d+), (\d+)\]", p.kind)
        assert bounds, f"{name}.{p.name}: {p.kind!r} does not give the range"
        lo, hi = int(bounds[1]), int(bounds[2])
        assert re.search(rf"^  {p.name} +int in \[{lo}, {hi}\] ", text, re.M), text
        for value in (lo, hi):
            p.check(value, p.name)
        for value in (lo - 1, hi + 1):
            with pytest.raises(ConfigError, match=rf"{p.name}: {value} is out of range; accepted: \[{lo}, {hi}\]"):
                p.check(value, p.name)


# -- gridmask --------------------------------------------------------------------------------------
def test_gridmask_unrotated_mask_is_the_grid() -> None:
    h, w = 60, 100
    params = {"ratio": 0.4, "unit": 20.0, "dx": 3.0, "dy": 7.0, "angle": 0.0}
    mask = grid_mask(h, w, params)
    side = math.ceil(math.hypot(h, w))
    oy, ox = (side - h) // 2, (side - w) // 2
    for y in range(h):
        for x in range(w):
            u, v = x + ox, y + oy  # position in the mask square
            in_x = any(k * 20 - 3 - 8 <= u < k * 20 - 3 for k in range(1, side // 20 + 2))
            in_y = any(k * 20 - 7 - 8 <= v < k * 20 - 7 for k in range(1, side // 20 + 2))
            assert mask[y, x] == (in_x and in_y), (y, x)
    assert abs(mask.mean() - 0.4**2) < 0.03
    assert not grid_mask(h, w, {**params, "ratio": 0.0}).any()


def test_gridmask_rotation_turns_the_mask() -> None:
    h = w = 42  # mask square side 60: the crop is centred on the rotation centre, so 90 degrees is exact
    params = {"ratio": 0.5, "unit": 13.0, "dx": 2.0, "dy": 5.0, "angle": 0.0}
    flat = grid_mask(h, w, params)
    turned = grid_mask(h, w, {**params, "angle": 90.0})
    # a positive angle is counter-clockwise on screen, as KerasCV's; np.rot90(k=1) turns that way
    assert np.array_equal(turned, np.rot90(flat, 1))
    tilted = grid_mask(h, w, {**params, "angle": 30.0})
    assert not np.array_equal(tilted, flat) and 0.1 < tilted.mean() < 0.4


@pytest.mark.parametrize("rotation", [[0.03, 0.11], [-0.12, -0.04]])
def test_gridmask_rotation_direction_matches_kerascv(rotation: list[float]) -> None:
    """The stage's draws replayed through keras_cv.layers.GridMask with an asymmetric (one-sided)
    rotation_factor: the masks agree, so the recorded angle has KerasCV's sign and direction."""
    tf = pytest.importorskip("tensorflow")
    kcv = pytest.importorskip("keras_cv")
    from tests.test_policy_stages_match_kerascv import Script

    h, w = 48, 64
    grid = stage("gridmask", ratio_factor=[0.4, 0.6], rotation_factor=rotation, fill_value=255)
    image = np.zeros((h, w, 3), np.uint8)
    for seed in range(3):
        params = grid.sample(np.random.default_rng(seed), image.shape)
        for key in ("unit", "dx", "dy"):  # KerasCV draws float32: both sides take the same values
            params[key] = float(np.float32(params[key]))
        assert rotation[0] * 360 <= params["angle"] <= rotation[1] * 360
        layer = kcv.layers.GridMask(ratio_factor=(params["ratio"], params["ratio"]), rotation_factor=tuple(rotation),
                                    fill_value=255)
        layer.random_rotate.interpolation = "nearest"  # augexport's (documented) resampling
        layer._random_generator = Script(tf, [params["unit"], params["dx"], params["dy"]])
        layer.random_rotate._random_generator = Script(tf, [math.radians(params["angle"])])
        picture = tf.constant(image, tf.float32)
        theirs = layer.augment_image(picture, transformation=layer.get_random_transformation(image=picture))
        Script.assert_all_used()
        ours = grid.apply(image, params)
        differ = float(np.mean(ours[..., 0] != np.asarray(theirs)[..., 0]))
        assert differ < 0.002, f"seed {seed}: {differ:.2%} of the pixels differ from KerasCV"


def test_gridmask_params_fill_and_replay() -> None:
    image = noise(37, 90)
    const = stage("gridmask", ratio_factor=[0.3, 0.6], rotation_factor=0.1, fill_value=255)
    gauss = stage("gridmask", fill_mode="gaussian_noise")
    for draw in range(200):
        params = const.draw(np.random.Generator(np.random.PCG64(draw)), image.shape)
        assert 0.3 <= params["ratio"] <= 0.6 and -36.0 <= params["angle"] <= 36.0
        assert min(37 * 0.5, 90 * 0.3) <= params["unit"] < max(37 * 0.5, 90 * 0.3) + 1
        assert 0 <= params["dx"] < params["unit"] and 0 <= params["dy"] < params["unit"]
        mask = grid_mask(37, 90, params)
        out = const.run(image, json.loads(json.dumps(params)))  # replays from the recorded JSON
        assert np.all(out[mask] == 255) and np.array_equal(out[~mask], image[~mask])
    params = gauss.draw(np.random.Generator(np.random.PCG64(1)), image.shape)
    out = gauss.run(image, params)
    assert np.array_equal(out, gauss.run(image, params))  # seeded noise: same params, same pixels
    mask = grid_mask(37, 90, params)
    assert mask.any() and out[mask].std() > 20 and abs(out[mask].mean() - 127.5) < 20
    assert np.array_equal(out[~mask], image[~mask])


def test_gridmask_validation() -> None:
    with pytest.raises(ConfigError, match=r"gridmask\.ratio_factor"):
        build_pipeline({"stages": [{"gridmask": {"ratio_factor": 1.5}}]})
    with pytest.raises(ConfigError, match="did you mean gaussian_noise"):
        build_pipeline({"stages": [{"gridmask": {"fill_mode": "gaussian"}}]})
    with pytest.raises(ConfigError, match=r"gridmask\.rotation_factor"):
        build_pipeline({"stages": [{"gridmask": {"rotation_factor": [0.2, -0.2]}}]})
    ok = build_pipeline({"stages": [{"gridmask": {"ratio_factor": 0.5, "p": 0.5}}]})
    assert ok.to_spec()["stages"][0]["gridmask"]["ratio_factor"] == 0.5


# -- exported records replay -----------------------------------------------------------------------
def test_exported_params_replay_the_pixels(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for i, (h, w) in enumerate([(24, 40), (36, 20), (30, 30), (18, 44)]):
        (src / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(noise(h, w, i)).save(src / f"c{i % 2}" / f"im{i}.png")
    out = tmp_path / "out"
    spec = [{"cutout": {"size": 0.4, "count": 2, "fill": 9}}, {"gridmask": {"fill_mode": "gaussian_noise"}}]
    api.export(str(src), out, encoding="png", workers=1, overrides={"copies": 2, "stages": spec})
    cutout, gridmask = stage("cutout", size=0.4, count=2, fill=9), stage("gridmask", fill_mode="gaussian_noise")
    manifest = read_manifest(out)
    n = 0
    for shard in manifest["splits"]["train"]["shards"]:
        with open(out / shard["file"], "rb") as f:
            for data in read_tfrecords(f):
                ex = decode_example(data)
                params = json.loads(ex["params"][0])
                pixels = np.asarray(Image.open(io.BytesIO(ex["image"][0])))
                image = np.asarray(Image.open(src / ex["source_id"][0].decode()).convert("RGB"))
                if ex["copy"][0] == 0:
                    assert params == [] and np.array_equal(pixels, image)
                    continue
                assert [p["stage"] for p in params] == ["cutout", "gridmask"]
                replay = gridmask.run(cutout.run(image, params[0]["params"]), params[1]["params"])
                assert np.array_equal(pixels, replay)
                n += 1
    assert n == 8
