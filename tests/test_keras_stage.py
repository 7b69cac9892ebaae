"""The `keras` stage against tf.keras' own ImageDataGenerator: draws, kernel, replay, export.

Tolerance: cv2 resamples bilinearly with 1/32-pixel fixed-point weights where scipy uses float64,
and rounds nearest-neighbour ties differently, so on smooth images >= 99% of uint8 pixels are within
2 levels of Keras; on white noise (neighbours up to 255 apart) >= 99% are within 5 levels.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augexport import api
from augexport.cli import main
from augexport.errors import ConfigError
from augexport.manifest import read_manifest
from augexport.pipeline import build_pipeline
from augexport.records import decode_example, read_tfrecords
from augexport.stages.keras import KerasStage, apply_keras

KEYS = {"theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical", "channel_shift_intensity",
        "brightness"}
WIDE = {"rotation_range": 30, "width_shift_range": 0.2, "height_shift_range": 0.15, "shear_range": 15,
        "zoom_range": [0.7, 1.3], "horizontal_flip": True, "vertical_flip": True}


@pytest.fixture(scope="module")
def idg():  # the Keras class
    tf = pytest.importorskip("tensorflow")
    return tf.keras.preprocessing.image.ImageDataGenerator


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """A random but photo-like image: bicubic upsampling of coarse noise."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 6 + 2, w // 6 + 2, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def stage(**config: object) -> KerasStage:
    return KerasStage.from_spec(config, "stages[0].keras")


def keras_reference(idg, image: np.ndarray, params: dict, **config: object) -> np.ndarray:
    """ImageDataGenerator().apply_transform on float32 pixels (what flow() feeds it), rounded to uint8.
    No seed is ever given: Keras would seed numpy's global generator."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = idg(**config).apply_transform(image.astype(np.float32), params)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def close_fraction(a: np.ndarray, b: np.ndarray, levels: int) -> float:
    return float((np.abs(a.astype(np.int16) - b.astype(np.int16)) <= levels).mean())


# -- the kernel against Keras ---------------------------------------------------------------------
@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
def test_matches_keras_on_non_square_image(idg, fill_mode: str, order: int) -> None:
    image = smooth_image(37, 53, seed=order)
    extra = {"fill_mode": fill_mode, "cval": 77.0, "interpolation_order": order}
    st = stage(**WIDE, channel_shift_range=30, brightness_range=[0.6, 1.4], **extra)
    rng = np.random.default_rng(5)
    for _ in range(6):
        params = st.sample(rng, image.shape)
        ours = st.apply(image, params)
        assert ours.dtype == np.uint8 and ours.shape == image.shape
        assert close_fraction(ours, keras_reference(idg, image, params, **extra), 2) >= 0.99, params


@pytest.mark.parametrize("fill_mode", ["constant", "wrap"])
def test_matches_keras_on_white_noise(idg, fill_mode: str) -> None:
    image = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    st = stage(**WIDE, fill_mode=fill_mode, cval=200.0)
    rng = np.random.default_rng(6)
    for _ in range(4):
        params = st.sample(rng, image.shape)
        ref = keras_reference(idg, image, params, fill_mode=fill_mode, cval=200.0)
        assert close_fraction(st.apply(image, params), ref, 5) >= 0.99


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "wrap"])
def test_a_side_past_opencvs_short_range_matches_keras(idg, fill_mode: str) -> None:
    """OpenCV's remap asserts below 32767 px a side; such images go the way Keras goes (scipy), so
    they are augmented, not skipped with an OpenCV assertion."""
    image = np.random.default_rng(2).integers(0, 256, (1, 40000, 3), dtype=np.uint8)
    st = stage(rotation_range=10, zoom_range=0.1, horizontal_flip=True, fill_mode=fill_mode, cval=9.0)
    params = st.sample(np.random.default_rng(1), image.shape)
    ref = keras_reference(idg, image, params, fill_mode=fill_mode, cval=9.0)
    assert close_fraction(st.apply(image, params), ref, 1) >= 0.999


def test_spline_order_3_falls_back_to_scipy(idg) -> None:
    image = smooth_image(20, 31, seed=9)
    st = stage(rotation_range=40, zoom_range=0.2, interpolation_order=3, fill_mode="reflect")
    params = st.sample(np.random.default_rng(0), image.shape)
    ref = keras_reference(idg, image, params, interpolation_order=3, fill_mode="reflect")
    assert close_fraction(st.apply(image, params), ref, 1) >= 0.99


@pytest.mark.parametrize("order", [2, 3, 5])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect", "wrap"])
def test_spline_warps_that_overshoot_take_keras_brightness_rescale(idg, order: int, fill_mode: str) -> None:
    """A spline warp overshoots 0..255; Keras' apply_brightness_shift then stretches the image's
    min..max onto 0..255 around PIL's brightness and back (clipping instead was up to 43 levels off)."""
    image = smooth_image(40, 40, seed=order)
    params = {"theta": 2.128, "zx": 1.926, "zy": 0.716, "channel_shift_intensity": -15.3, "brightness": 1.524}
    config = {"fill_mode": fill_mode, "cval": 77.0, "interpolation_order": order}
    ours = apply_keras(image, params, fill_mode=fill_mode, cval=77.0, order=order)
    ref = keras_reference(idg, image, params, **config)
    assert close_fraction(ours, ref, 1) >= 0.999, (order, fill_mode)


@pytest.mark.parametrize("order", [2, 3, 5])
def test_spline_warps_that_overshoot_are_channel_shifted_before_clipping(idg, order: int) -> None:
    """Strokes of 255 on 0 make a spline warp overshoot far (-50..317); Keras shifts that float image
    and clips to its own min..max, so clipping to 0..255 first was up to the shift itself off."""
    image = np.zeros((28, 28, 1), np.uint8)
    image[6:22, 12:16] = 255
    image[6:10, 8:20] = 255
    for shift in (30.0, -30.0):
        params = {"theta": 12.0, "zx": 0.9, "zy": 1.1, "channel_shift_intensity": shift}
        ours = apply_keras(image, params, fill_mode="constant", order=order)
        ref = keras_reference(idg, image, params, fill_mode="constant", interpolation_order=order)
        assert close_fraction(ours, ref, 1) >= 0.999, (order, shift)


@pytest.mark.parametrize("order", [0, 1])
def test_wrap_sends_an_exact_negative_multiple_of_the_period_where_scipy_does(idg, order: int) -> None:
    for shape, params in (((2, 2, 3), {"tx": -3.0}), ((2, 2, 3), {"ty": -1.0}), ((3, 4, 1), {"tx": -3.0}),
                          ((40, 40, 3), {"tx": -39.0})):
        image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
        ours = apply_keras(image, params, fill_mode="wrap", order=order)
        assert np.array_equal(ours, keras_reference(idg, image, params, fill_mode="wrap", interpolation_order=order))


def test_a_fractional_fill_is_truncated_before_brightness_as_keras_does(idg) -> None:
    image = smooth_image(60, 90, seed=5)
    for cval in (77.6, 100.5, 200.9):
        params = {"zx": 1.6, "zy": 1.6, "brightness": 3.0}
        ours = apply_keras(image, params, fill_mode="constant", cval=cval, order=0)
        ref = keras_reference(idg, image, params, fill_mode="constant", cval=cval, interpolation_order=0)
        assert np.array_equal(ours, ref), cval


def test_channel_shift_and_brightness_exact_without_resample(idg) -> None:
    image = smooth_image(30, 40, seed=2)
    for params in ({"channel_shift_intensity": 23.7, "brightness": None},
                   {"channel_shift_intensity": -41.2, "brightness": 1.37},
                   {"channel_shift_intensity": None, "brightness": 0.55, "flip_horizontal": True}):
        assert np.array_equal(apply_keras(image, params), keras_reference(idg, image, params))


@pytest.mark.parametrize("extra", [{}, {"channel_shift_range": 30}, {"fill_mode": "constant", "cval": 77.0},
                                   {"fill_mode": "wrap"}])
def test_brightness_after_a_warp_is_not_biased(idg, extra: dict) -> None:
    """Keras truncates its float warp to uint8 before PIL's brightness; rounding it instead made
    the result 0.3-0.5 levels brighter than Keras on average."""
    image = smooth_image(64, 96, seed=1)
    st = stage(**WIDE, brightness_range=[0.6, 1.4], **extra)
    config = {k: v for k, v in extra.items() if k != "channel_shift_range"}
    rng = np.random.default_rng(5)
    diffs = []
    for _ in range(12):
        params = st.sample(rng, image.shape)
        ours, ref = st.apply(image, params), keras_reference(idg, image, params, **config)
        assert close_fraction(ours, ref, 2) >= 0.99, params
        diffs.append(float(ours.mean()) - float(ref.mean()))
    assert abs(float(np.mean(diffs))) < 0.05, diffs
    assert max(abs(d) for d in diffs) < 0.1, diffs


def test_keras_quirks_and_fix_axes(idg) -> None:
    """A 180° turn of a non-square image: Keras' transposed centre misplaces it, fix_axes does not."""
    image = smooth_image(20, 31, seed=4)
    params = {"theta": 180.0}
    quirky = apply_keras(image, params)
    assert not np.array_equal(quirky, image[::-1, ::-1])
    assert close_fraction(quirky, keras_reference(idg, image, params), 2) >= 0.99
    assert np.array_equal(apply_keras(image, params, fix_axes=True), image[::-1, ::-1])
    # fix_axes: tx comes from width_shift_range and moves columns (content moves left by tx).
    st = stage(width_shift_range=[5], fix_axes=True)
    p = st.sample(np.random.default_rng(1), image.shape)
    assert abs(p["tx"]) == 5 and p["ty"] == 0
    shifted = st.apply(image, p)
    k = int(p["tx"])
    if k > 0:
        assert np.array_equal(shifted[:, : -k], image[:, k:])
    else:
        assert np.array_equal(shifted[:, -k:], image[:, :k])


def test_identity_and_purity() -> None:
    image = smooth_image(12, 17, seed=1)
    before = image.copy()
    st = stage()
    params = st.sample(np.random.default_rng(0), image.shape)
    assert st.apply(image, params) is image
    out = stage(**WIDE).apply(image, stage(**WIDE).sample(np.random.default_rng(2), image.shape))
    assert np.array_equal(image, before) and out.flags.c_contiguous
    grey = image[..., :1].copy()
    st1 = stage(**WIDE, fill_mode="constant")
    assert st1.apply(grey, st1.sample(np.random.default_rng(3), grey.shape)).shape == grey.shape


# -- the draws ---------------------------------------------------------------------------------------
def draws(n: int, shape: tuple[int, int, int] = (40, 60, 3), **config: object) -> list[dict]:
    st = stage(**config)
    rng = np.random.default_rng(11)
    return [st.sample(rng, shape) for _ in range(n)]


def test_params_are_keras_keys_and_json() -> None:
    for p in draws(20, **WIDE, channel_shift_range=10, brightness_range=[0.5, 1.5]):
        assert set(p) == KEYS
        assert json.loads(json.dumps(p, allow_nan=False)) == p
        assert all(type(v) in (float, bool) for v in p.values())
    p = draws(1)[0]
    assert p["channel_shift_intensity"] is None and p["brightness"] is None
    assert (p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"]) == (0.0, 0.0, 0.0, 0.0, 1.0, 1.0)


def test_integer_shift_is_integer_pixels_in_open_range() -> None:
    ps = draws(400, width_shift_range=3)
    ty = {p["ty"] for p in ps}
    assert ty == {-2.0, -1.0, 0.0, 1.0, 2.0}  # Keras: choice(3) * choice([-1, 1])
    assert {p["tx"] for p in ps} == {0.0}


def test_float_shifts_fraction_and_pixels() -> None:
    ty = np.array([p["ty"] for p in draws(400, width_shift_range=0.1)])  # width 60: (-6, 6)
    assert ty.min() > -6 and ty.max() < 6 and ty.min() < -5 and ty.max() > 5
    assert np.mean(ty != np.round(ty)) > 0.99
    tx = np.array([p["tx"] for p in draws(400, height_shift_range=2.5)])  # float >= 1: pixels
    assert tx.min() > -2.5 and tx.max() < 2.5 and tx.max() > 2.0
    ty = {p["ty"] for p in draws(200, width_shift_range=[0.1, 0.25])}  # list: choice x sign x width
    assert ty == {-15.0, -6.0, 6.0, 15.0}


def test_zoom_rotation_shear_brightness_channel_ranges() -> None:
    ps = draws(300, zoom_range=[0.5, 0.9], rotation_range=10, shear_range=5, brightness_range=[0.2, 0.4],
               channel_shift_range=20)
    zx, zy = np.array([p["zx"] for p in ps]), np.array([p["zy"] for p in ps])
    assert zx.min() >= 0.5 and zx.max() < 0.9 and zy.min() >= 0.5 and zy.max() < 0.9
    assert abs(np.corrcoef(zx, zy)[0, 1]) < 0.2  # drawn independently
    assert all(-10 <= p["theta"] <= 10 and -5 <= p["shear"] <= 5 for p in ps)
    assert all(0.2 <= p["brightness"] < 0.4 and -20 <= p["channel_shift_intensity"] <= 20 for p in ps)
    z = np.array([p["zx"] for p in draws(300, zoom_range=0.2)])
    assert z.min() >= 0.8 and z.max() < 1.2 and z.min() < 0.85 and z.max() > 1.15


def test_flip_probabilities() -> None:
    ps = draws(400, horizontal_flip=True)
    share = np.mean([p["flip_horizontal"] for p in ps])
    assert 0.4 < share < 0.6 and not any(p["flip_vertical"] for p in ps)


def test_sample_is_deterministic_per_generator() -> None:
    st = stage(**WIDE)
    a = st.sample(np.random.default_rng(42), (30, 30, 3))
    assert a == st.sample(np.random.default_rng(42), (30, 30, 3))


def test_sampled_params_replay_through_keras(idg) -> None:
    image = smooth_image(33, 48, seed=8)
    st = stage(**WIDE, channel_shift_range=15, fill_mode="reflect")
    params = json.loads(json.dumps(st.sample(np.random.default_rng(9), image.shape)))
    ref = keras_reference(idg, image, params, fill_mode="reflect")
    assert close_fraction(st.apply(image, params), ref, 2) >= 0.99


# -- configuration errors ---------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value", "expected"), [
    ("fill_mode", "bogus", "accepted: constant, nearest, reflect, wrap"),
    ("width_shift_range", "abc", "accepted: a number in [0, 100000]"),
    ("height_shift_range", -0.1, "out of range"),
    ("zoom_range", [1.2, 0.8], "greater than high"),
    ("zoom_range", 1.5, "accepted: [0, 1)"),
    ("brightness_range", 0.5, "accepted: null or a list [low, high]"),
    ("interpolation_order", 7, "accepted: [0, 5]"),
    ("horizontal_flip", "yes", "expected true or false"),
    ("cval", 300, "accepted: [0, 255]"),
    ("rotation", 10, "did you mean rotation_range"),
])
def test_config_errors_name_the_path(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_pipeline({"copies": 1, "stages": [{"keras": {key: value}}]})
    assert f"stages[0].keras.{key}" in str(err.value) and expected in str(err.value)


@pytest.mark.parametrize(("text", "words"), [
    ("rotation_range: 1.0e+308", "rotation_range: 1e+308 is out of range; accepted: [0, 360]"),
    ("shear_range: 1.0e+308", "shear_range: 1e+308 is out of range; accepted: [0, 360]"),
    ("width_shift_range: 1.0e+308", "width_shift_range: 1e+308 is out of range; accepted: a number in [0, 100000]"),
    ("height_shift_range: " + "9" * 30, "height_shift_range: " + "9" * 30 + " is out of range; accepted: a number"),
    ("width_shift_range: [0.1, -1.0e+308]", "width_shift_range: [0.1, -1e+308] is out of range; accepted: a number"),
    ("zoom_range: [0.5, 1.0e+308]", "zoom_range[1]: 1e+308 is out of range; accepted: [0, 1000]"),
    ("brightness_range: [0.5, 1.0e+308]", "brightness_range[1]: 1e+308 is out of range; accepted: [0, 1000]"),
])
def test_absurd_ranges_are_config_errors_through_the_cli(tmp_path: Path, text: str, words: str) -> None:
    """Values whose draws overflowed (numpy's uniform(-r, r), integers past int64) crashed the dry run
    with a raw OverflowError; now the key and the accepted range are named, exit 2."""
    from tests.test_config_errors import assert_stage_config_error

    assert_stage_config_error(tmp_path, f"keras: {{{text}}}", f"keras.{words}")


def test_range_bounds_are_accepted() -> None:
    """The bounds themselves still draw and warp, without a numpy warning."""
    st = stage(rotation_range=360, shear_range=360, width_shift_range=100_000, height_shift_range=[-100_000, 0.5],
               zoom_range=[0, 1000], brightness_range=[0, 1000])
    image = smooth_image(20, 30, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in range(5):
            params = st.sample(np.random.default_rng(seed), image.shape)
            assert st.apply(image, params).shape == image.shape


def test_cli_bad_fill_mode_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", str(tmp_path / "src"), str(tmp_path / "out"), "--fill-mode", "bogus"])
    assert result.exit_code == 2, result.output
    assert "--fill-mode: 'bogus'" in result.output and "constant, nearest, reflect, wrap" in result.output


# -- end to end ----------------------------------------------------------------------------------------
def make_source(root: Path) -> dict[str, np.ndarray]:
    images = {}
    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            img = smooth_image(24 + 4 * i, 35, seed=10 * c + i)
            Image.fromarray(img).save(root / cls / f"{i}.png")
            images[f"{cls}/{i}.png"] = img
    return images


def read_records(out: Path) -> list[dict]:
    records = []
    for shard in sorted(out.glob("*.tfrecord*")):
        with open(shard, "rb") as f:
            records.extend(decode_example(data) for data in read_tfrecords(f))
    return records


def test_export_records_replay_through_keras(idg, tmp_path: Path) -> None:
    images = make_source(tmp_path / "src")
    config = {"rotation_range": 20, "width_shift_range": 0.1, "height_shift_range": 3, "shear_range": 10,
              "zoom_range": 0.1, "horizontal_flip": True, "fill_mode": "constant", "cval": 30.0}
    api.export(str(tmp_path / "src"), tmp_path / "out", encoding="png", workers=1,
               overrides={"copies": 2, "stages": [{"keras": config}]})
    records = read_records(tmp_path / "out")
    assert len(records) == 4 * 3
    checked = 0
    for rec in records:
        params = json.loads(rec["params"][0])
        if rec["copy"][0] == 0:
            assert params == []
            continue
        (entry,) = params
        assert entry["stage"] == "keras" and set(entry["params"]) == KEYS
        stored = np.asarray(Image.open(io.BytesIO(rec["image"][0])).convert("RGB"))
        source = images[rec["source_id"][0].decode()]
        ref = keras_reference(idg, source, entry["params"], fill_mode="constant", cval=30.0)
        assert close_fraction(stored, ref, 2) >= 0.99
        checked += 1
    assert checked == 8


def test_featurewise_stats_in_manifest(tmp_path: Path) -> None:
    images = make_source(tmp_path / "src")
    api.export(str(tmp_path / "src"), tmp_path / "out", encoding="png", workers=1,
               overrides={"copies": 1, "stages": [{"keras": {"featurewise_std_normalization": True}}]})
    stats = read_manifest(tmp_path / "out")["splits"]["train"]["featurewise_stats"]
    pixels = np.concatenate([im.reshape(-1, 3) for im in images.values()]).astype(np.float64)
    assert np.allclose(stats["mean"], pixels.mean(axis=0), atol=1e-5)
    assert np.allclose(stats["std"], pixels.std(axis=0), atol=1e-5)
    assert stats["images"] == 4 and "training time" in stats["note"]
    api.export(str(tmp_path / "src"), tmp_path / "out2", workers=1, overrides={"copies": 1, "stages": [{"keras": {}}]})
    assert "featurewise_stats" not in read_manifest(tmp_path / "out2")["splits"]["train"]


@pytest.mark.parametrize("where", ["one_of", "classes"])
def test_featurewise_stats_of_a_keras_stage_inside_a_control_stage_or_a_class(tmp_path: Path, where: str) -> None:
    """The first pass ran only for top-level keras stages: nested ones lost the statistics silently."""
    images = make_source(tmp_path / "src")
    keras = {"keras": {"featurewise_std_normalization": True}}
    spec = ({"stages": [{"one_of": [keras, {"keras": {}}]}]} if where == "one_of" else
            {"classes": {sorted(p.name for p in (tmp_path / "src").iterdir())[0]: {"stages": [keras]}}})
    api.export(str(tmp_path / "src"), tmp_path / "out", encoding="png", workers=1, overrides={"copies": 1, **spec})
    stats = read_manifest(tmp_path / "out")["splits"]["train"]["featurewise_stats"]
    pixels = np.concatenate([im.reshape(-1, 3) for im in images.values()]).astype(np.float64)
    assert np.allclose(stats["mean"], pixels.mean(axis=0), atol=1e-5)  # the whole data set, as fit(x)
    assert np.allclose(stats["std"], pixels.std(axis=0), atol=1e-5)


@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "reflect"])
def test_the_rgba_warp_route_gives_the_direct_warps_bytes(monkeypatch: pytest.MonkeyPatch, fill_mode: str) -> None:
    """Processes whose buffers are reused warp RGB through RGBA (faster there), others directly:
    which route ran must never show in the pixels."""
    from augexport import allocator

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    params = {"theta": 17.0, "tx": 3.5, "ty": -2.25, "shear": 6.0, "zx": 1.1, "zy": 0.93, "flip_horizontal": True}
    outs = []
    for reused in (False, True):
        monkeypatch.setattr(allocator, "_tuned", reused)
        outs.append(apply_keras(image, params, fill_mode=fill_mode, cval=40.0))
    assert outs[0].dtype == np.uint8 and np.array_equal(outs[0], outs[1])
