"""tf_image stage: every op against the real tf.image with the factors the stage recorded,
the draw distributions TF documents, and config errors that name the path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from augexport.errors import ConfigError
from augexport.pipeline import build_pipeline
from augexport.rng import example_rng
from augexport.stages.tf_image import OPS, TfImage
from tests.conftest import make_class_folder, smooth_image


@pytest.fixture(scope="module")
def tf():  # the tensorflow module
    return pytest.importorskip("tensorflow")


def _noise(seed: int, h: int = 23, w: int = 31, c: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)


def _stage(*ops: dict) -> TfImage:
    return TfImage.from_spec(list(ops), "stages[0].tf_image")  # type: ignore[return-value]


def _run(stage: TfImage, image: np.ndarray, copy: int) -> tuple[np.ndarray, list[dict]]:
    params = stage.draw(example_rng(7, "img.png", copy), image.shape)
    before = image.copy()
    out = stage.run(image, params)
    assert np.array_equal(image, before), "input modified in place"
    assert out.dtype == np.uint8
    return out, params["ops"]


def _max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


ORACLES = {
    "random_brightness": ({"max_delta": 0.4}, lambda tf, x, p: tf.image.adjust_brightness(x, p["delta"])),
    "random_contrast": ({"lower": 0.2, "upper": 1.8}, lambda tf, x, p: tf.image.adjust_contrast(x, p["factor"])),
    "random_saturation": ({"lower": 0.0, "upper": 3.0}, lambda tf, x, p: tf.image.adjust_saturation(x, p["factor"])),
    "random_hue": ({"max_delta": 0.5}, lambda tf, x, p: tf.image.adjust_hue(x, p["delta"])),
    "random_jpeg_quality": ({"min_jpeg_quality": 5, "max_jpeg_quality": 100},
                            lambda tf, x, p: tf.image.adjust_jpeg_quality(x, p["quality"])),
}


@pytest.mark.parametrize("op", sorted(ORACLES))
@pytest.mark.parametrize("image", ["noise", "smooth", "grey"])
def test_colour_ops_equal_tf_adjust_with_recorded_factor(tf, op: str, image: str) -> None:
    args, oracle = ORACLES[op]
    stage = _stage({op: args})
    for copy in range(1, 7):
        x = smooth_image(copy, 37, 53) if image == "smooth" else _noise(copy, c=1 if image == "grey" else 3)
        out, recorded = _run(stage, x, copy)
        assert recorded[0]["op"] == op
        if x.shape[2] == 1 and op in ("random_hue", "random_saturation"):
            assert np.array_equal(out, x)  # TF requires 3 channels; grey has no hue or saturation
            continue
        expected = oracle(tf, x, recorded[0]).numpy()
        assert _max_diff(out, expected) == 0, (op, recorded)


def _every_ordering() -> np.ndarray:
    """Every (r, g) pair against blue levels at the ends and the middle: all orderings and ties of
    the three channels, greys, black, white and fully saturated colours."""
    v = np.arange(256, dtype=np.uint8)
    r, g = np.meshgrid(v, v, indexing="ij")
    return np.concatenate([np.stack([r, g, np.full_like(r, b)], axis=-1) for b in (0, 1, 128, 254, 255)])


@pytest.mark.parametrize("delta", [0.0, 1e-9, -1e-9, 0.007, 0.0276, -0.0396, -0.2, 1 / 6, -1 / 3, 0.5, -0.5])
def test_adjust_hue_is_bit_exact_on_every_ordering_and_tie(tf, delta: float) -> None:
    from augexport.stages.tf_image import adjust_hue

    x = _every_ordering()
    assert np.array_equal(adjust_hue(x, delta), tf.image.adjust_hue(x, delta).numpy())


@pytest.mark.parametrize("factor", [0.0, 0.37, 1.0, 1.6, 3.0, 40.0])
def test_adjust_saturation_is_bit_exact_on_every_ordering_and_tie(tf, factor: float) -> None:
    from augexport.stages.tf_image import adjust_saturation

    x = _every_ordering()
    assert np.array_equal(adjust_saturation(x, factor), tf.image.adjust_saturation(x, factor).numpy())


@pytest.mark.parametrize("factor", [3.4e38, 3.5e38, 1e39, 1e308, -2.0])
def test_adjust_saturation_past_float32_matches_tf(tf, factor: float) -> None:
    """A factor past float32's range is inf in float32; TF's min(1, max(0, s · inf)) gives greys
    (s = 0, 0 · inf = NaN) saturation 0, so they stay grey. Negative factors clamp to 0 too."""
    import warnings

    from augexport.stages.tf_image import adjust_saturation

    x = _every_ordering()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no float32 overflow warning from the kernel either
        ours = adjust_saturation(x, factor)
    assert np.array_equal(ours, tf.image.adjust_saturation(x, factor).numpy())
    grey = np.full((1, 1, 3), 128, np.uint8)
    assert np.array_equal(adjust_saturation(grey, factor), grey)


def test_contrast_mean_is_tf_s_on_a_large_image(tf) -> None:
    """TF folds the plane in halves to sum it; a float32 numpy mean is a level off on ~0.2% of
    the values of this image."""
    from augexport.stages.tf_image import adjust_contrast

    x = smooth_image(0, 1000, 1000)
    assert np.array_equal(adjust_contrast(x, 0.2), tf.image.adjust_contrast(x, 0.2).numpy())


@pytest.mark.parametrize("op,tf_name", [("random_flip_left_right", "flip_left_right"), ("random_flip_up_down", "flip_up_down")])
def test_flips_exact(tf, op: str, tf_name: str) -> None:
    stage = _stage({op: {}})
    seen = set()
    for copy in range(1, 20):
        x = _noise(copy)
        out, recorded = _run(stage, x, copy)
        flip = recorded[0]["flip"]
        seen.add(flip)
        expected = getattr(tf.image, tf_name)(x).numpy() if flip else x
        assert np.array_equal(out, expected)
    assert seen == {True, False}


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.77, [0.5, 1.0]])
def test_central_crop_exact_and_resized_like_tf(tf, fraction: object) -> None:
    x = _noise(3)
    cropped, recorded = _run(_stage({"central_crop": {"central_fraction": fraction, "resize": False}}), x, 1)
    f = recorded[0]["central_fraction"]
    assert np.array_equal(cropped, tf.image.central_crop(x, f).numpy())
    resized, recorded2 = _run(_stage({"central_crop": {"central_fraction": fraction}}), x, 1)
    assert recorded2[0]["central_fraction"] == f  # same generator, same draw
    expected = np.clip(np.rint(tf.image.resize(tf.image.central_crop(x, f), x.shape[:2]).numpy()), 0, 255)
    assert _max_diff(resized, expected.astype(np.uint8)) <= 1


@pytest.mark.parametrize("size", [[11, 17], [11, 17, 3], 0.6])
def test_random_crop_is_a_slice_and_resize_matches_tf(tf, size: object) -> None:
    x = _noise(4)
    for copy in range(1, 6):
        cropped, recorded = _run(_stage({"random_crop": {"size": size, "resize": False}}), x, copy)
        y0, x0, y1, x1 = recorded[0]["box"]
        assert 0 <= y0 < y1 <= 23 and 0 <= x0 < x1 <= 31
        if isinstance(size, list):
            assert (y1 - y0, x1 - x0) == (11, 17)
        assert np.array_equal(cropped, x[y0:y1, x0:x1])
        resized, _ = _run(_stage({"random_crop": {"size": size}}), x, copy)
        expected = np.clip(np.rint(tf.image.resize(x[y0:y1, x0:x1], x.shape[:2]).numpy()), 0, 255).astype(np.uint8)
        assert _max_diff(resized, expected) <= 1


@pytest.mark.parametrize("size", [[40, 6], [10, 13], [40, 6, 3]])
def test_random_crop_larger_than_the_image_fails_like_tf(tf, size: list[int]) -> None:
    """tf.image.random_crop refuses a crop larger than the image; so does the op (that image fails
    and is skipped; it is not the whole side any more)."""
    x = _noise(5, 10, 12)
    with pytest.raises(Exception):  # noqa: B017 - TF raises its own InvalidArgumentError
        tf.image.random_crop(x, [*size[:2], 3])
    with pytest.raises(ValueError, match=r"random_crop\.size .* is larger than this 10x12 image"):
        _run(_stage({"random_crop": {"size": size, "resize": False}}), x, 1)
    out, _ = _run(_stage({"random_crop": {"size": [10, 12], "resize": False}}), x, 1)  # the whole image still fits
    assert np.array_equal(out, x)


@pytest.mark.parametrize(("size", "channels"), [([10, 10, 4], 3), ([10, 10, 1], 3), ([10, 10, 3], 1)])
def test_random_crop_channel_mismatch_is_refused(tf, size: list[int], channels: int) -> None:
    """More channels than the image: TF raises. Fewer: TF crops out some channels, which no stage may
    do (every stage keeps the export's channel count), so that is refused too, not ignored."""
    x = _noise(5, 20, 20, channels)
    if size[2] > channels:
        with pytest.raises(Exception):  # noqa: B017 - TF raises its own InvalidArgumentError
            tf.image.random_crop(x, size)
    else:
        assert tf.image.random_crop(x, size).shape[2] == size[2] != channels
    with pytest.raises(ValueError, match=rf"asks for {size[2]} channel\(s\) but the image has {channels}"):
        _run(_stage({"random_crop": {"size": size}}), x, 1)


def _cli(tmp_path: Path, stages: str, *args: str, size: tuple[int, int] = (24, 32)) -> tuple[int, str, Path]:
    """Export a 2-image folder with `stages` (YAML text) through the CLI: (exit code, output, OUT)."""
    from tests.test_config_errors import _export

    cfg = tmp_path / "p.yaml"
    cfg.write_text(f"copies: 1\nstages:\n  - tf_image: {stages}\n")
    out = tmp_path / "out"
    code, output = _export(make_class_folder(tmp_path / "src", {"a": 1, "b": 1}, size=size), out, "--config", str(cfg),
                           *args)
    return code, output, out


@pytest.mark.parametrize(("size", "args"), [("[10, 10, 4]", ()), ("[10, 10, 1]", ()), ("[10, 10, 3]", ("--channels", "1")),
                                            ("[10, 10, 4], p: 0.01", ())])  # the dry run tries an op whatever its p
def test_cli_rejects_a_crop_channel_mismatch_before_any_work(tmp_path: Path, size: str, args: tuple[str, ...]) -> None:
    code, output, out = _cli(tmp_path, f"[{{random_crop: {{size: {size}}}}}]", *args)
    assert code == 2 and output.startswith(f"Error: {tmp_path / 'p.yaml'}: stages[0].tf_image: "), output
    assert "random_crop.size" in output and "channel(s) but the image has" in output and "Traceback" not in output
    assert not out.exists() or not any(out.iterdir())


def test_cli_skips_images_smaller_than_the_crop_into_the_errors_file(tmp_path: Path) -> None:
    """A pixel crop that fits some images (the dry run's probe image is no real size) fails only the
    images it does not fit: skipped and listed in errors-train.jsonl, the others exported."""
    code, output, out = _cli(tmp_path, "[{random_crop: {size: [62, 70, 3], resize: false}}]", size=(60, 72))
    assert code == 0, output  # the images are 60x72 and 64x78: the second fits (the 48x64 probe neither)
    errors = [json.loads(line) for line in (out / "errors-train.jsonl").read_text().splitlines()]
    assert len(errors) == 1 and "is larger than this 60x72 image" in errors[0]["error"], errors
    assert "1 skipped" in output


def test_cli_absurd_brightness_is_a_config_error(tmp_path: Path) -> None:
    """max_delta 1e308 once crashed the dry run (numpy's uniform(-d, d) overflows) with a raw
    OverflowError; now the key and its range are named."""
    code, output, _ = _cli(tmp_path, "[{random_brightness: {max_delta: 1.0e+308}}]")
    assert code == 2 and "stages[0].tf_image[0].random_brightness.max_delta: 1e+308 is out of range; accepted: [0, 1000]" \
        in output, output
    assert "Overflow" not in output and "Traceback" not in output


def test_draw_distributions_follow_tf() -> None:
    stage = _stage({"random_brightness": {"max_delta": 0.2}}, {"random_contrast": {"lower": 0.5, "upper": 1.5}},
                   {"random_saturation": {"lower": 0.1, "upper": 0.3}}, {"random_hue": {"max_delta": 0.1}},
                   {"random_jpeg_quality": {"min_jpeg_quality": 40, "max_jpeg_quality": 44}},
                   {"random_flip_left_right": {}}, {"central_crop": {"central_fraction": [0.5, 0.9]}})
    draws = [stage.sample(example_rng(0, f"s{i}", 1), (20, 30, 3))["ops"] for i in range(2000)]
    col = {op: [d[k] for d in draws] for k, op in enumerate(
        ["random_brightness", "random_contrast", "random_saturation", "random_hue", "random_jpeg_quality",
         "random_flip_left_right", "central_crop"])}
    delta = np.array([d["delta"] for d in col["random_brightness"]])
    assert delta.min() >= -0.2 and delta.max() < 0.2 and abs(delta.mean()) < 0.01 and delta.std() == pytest.approx(0.4 / 12**0.5, rel=0.1)
    contrast = np.array([d["factor"] for d in col["random_contrast"]])
    assert contrast.min() >= 0.5 and contrast.max() < 1.5 and contrast.mean() == pytest.approx(1.0, abs=0.03)
    sat = np.array([d["factor"] for d in col["random_saturation"]])
    assert sat.min() >= 0.1 and sat.max() < 0.3
    hue = np.array([d["delta"] for d in col["random_hue"]])
    assert hue.min() >= -0.1 and hue.max() < 0.1 and hue.min() < -0.09 and hue.max() > 0.09
    quality = [d["quality"] for d in col["random_jpeg_quality"]]
    assert set(quality) == {40, 41, 42, 43}  # TF's maxval is exclusive
    assert all(isinstance(q, int) for q in quality)
    flips = np.mean([d["flip"] for d in col["random_flip_left_right"]])
    assert 0.45 < flips < 0.55
    frac = np.array([d["central_fraction"] for d in col["central_crop"]])
    assert frac.min() >= 0.5 and frac.max() < 0.9


def test_op_probability_is_recorded_and_skips() -> None:
    stage = _stage({"random_brightness": {"max_delta": 0.5, "p": 0.3}})
    x = _noise(6)
    applied = 0
    for copy in range(1, 301):
        params = stage.sample(example_rng(1, "a", copy), x.shape)
        entry = params["ops"][0]
        if entry.get("applied", True) is False:
            assert np.array_equal(stage.apply(x, params), x)
        else:
            applied += 1
    assert 60 < applied < 120


def test_grey_images_keep_one_channel() -> None:
    x = _noise(7, c=1)
    stage = _stage("random_brightness", "random_hue", "random_saturation", "random_jpeg_quality",
                   {"random_crop": {"size": 0.5}}, "random_flip_up_down")
    out, _ = _run(stage, x, 1)
    assert out.shape == x.shape


def test_unresized_crop_feeds_later_ops_the_cropped_shape() -> None:
    stage = _stage({"central_crop": {"central_fraction": 0.5, "resize": False}}, {"random_crop": {"size": [8, 8], "resize": False}})
    out, recorded = _run(stage, _noise(8, 40, 40), 1)
    y0, x0, y1, x1 = recorded[1]["box"]
    assert y1 <= 20 and x1 <= 20 and out.shape == (8, 8, 3)


def test_same_generator_same_output_and_spec_round_trip() -> None:
    spec = {"version": 1, "stages": [{"tf_image": [{"random_hue": {"max_delta": 0.1}}, "random_flip_left_right",
                                                   {"central_crop": {"central_fraction": [0.6, 1.0]}}]}]}
    p1 = build_pipeline(spec)
    p2 = build_pipeline(p1.to_spec())
    assert p2.to_spec() == p1.to_spec()
    x = smooth_image(2, 30, 40)
    a = p1.stages[0].run(x, p1.stages[0].draw(example_rng(0, "k", 3), x.shape))
    b = p2.stages[0].run(x, p2.stages[0].draw(example_rng(0, "k", 3), x.shape))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("ops,path,words", [
    ([{"random_hue": {"max_delta": 0.6}}], "stages[0].tf_image[0].random_hue.max_delta", ["out of range", "0.5"]),
    ([{"random_flip_left_right": {}}, {"random_hu": {}}], "stages[0].tf_image[1]", ["unknown op", "did you mean random_hue"]),
    ([{"random_brightness": {"delta": 0.1}}], "stages[0].tf_image[0].random_brightness.delta", ["unknown key", "max_delta"]),
    ([{"random_contrast": {"lower": 1.2, "upper": 0.8}}], "stages[0].tf_image[0].random_contrast.upper", ["must be > lower"]),
    ([{"random_saturation": {"lower": -1}}], "stages[0].tf_image[0].random_saturation.lower", ["out of range"]),
    ([{"random_jpeg_quality": {"min_jpeg_quality": 90, "max_jpeg_quality": 90}}],
     "stages[0].tf_image[0].random_jpeg_quality.max_jpeg_quality", ["min_jpeg_quality"]),
    ([{"random_jpeg_quality": {"max_jpeg_quality": 101}}], "stages[0].tf_image[0].random_jpeg_quality.max_jpeg_quality", ["[0, 100]"]),
    ([{"random_crop": {"size": [0, 5]}}], "stages[0].tf_image[0].random_crop.size", ["[h, w]"]),
    ([{"random_crop": {"size": 1.5}}], "stages[0].tf_image[0].random_crop.size", ["fraction in (0, 1]"]),
    ([{"central_crop": {"central_fraction": 0}}], "stages[0].tf_image[0].central_crop.central_fraction", ["(0, 1]"]),
    ([{"central_crop": {"central_fraction": [0.0, 0.5]}}], "stages[0].tf_image[0].central_crop.central_fraction", ["(0, 1]"]),
    ([{"random_brightness": {"max_delta": 0.1}, "random_hue": {}}], "stages[0].tf_image[0]", ["one-key mapping"]),
    ({"random_brightness": {"max_delta": 0.1}}, "stages[0].tf_image", ["list of ops"]),
])
def test_config_errors_name_the_path(ops: object, path: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        build_pipeline({"stages": [{"tf_image": ops}]})
    assert err.value.path == path
    for w in words:
        assert w in str(err.value), str(err.value)


def test_ops_rows_list_every_op_and_parameter() -> None:
    rows = TfImage.ops_rows()
    listed = {(r[1]) for r in rows if r[2] == "op"}
    assert listed == set(OPS)
    for op in OPS.values():
        for p in op.schema:
            assert any(r[0] == op.name and r[1] == p.name and repr(p.default) in r[3] for r in rows)
