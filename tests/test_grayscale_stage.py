"""grayscale stage: bit-exact tf.image.rgb_to_grayscale on every uint8 colour, KerasCV's layer within
its float rounding, grey input is the identity, and the channel-count rule is a usage error (exit 2)
before any work."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augexport import api
from augexport.cli import main
from augexport.errors import ConfigError
from augexport.pipeline import build_pipeline, dry_run
from augexport.stages import builtin_stages
from augexport.stages.grayscale import luma
from tests.conftest import make_class_folder, smooth_image
from tests.helpers import read_records

GRAYSCALE = builtin_stages()["grayscale"]


def _stage(**config: object) -> object:
    return GRAYSCALE.from_spec(config, "stages[0].grayscale")


@pytest.fixture(scope="module")
def tf():  # the tensorflow module
    return pytest.importorskip("tensorflow")


def test_luma_equals_tf_rgb_to_grayscale_on_every_uint8_colour(tf) -> None:
    v = np.arange(256, dtype=np.uint8)
    colours = np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1).reshape(4096, 4096, 3)
    expected = tf.image.rgb_to_grayscale(colours).numpy()
    np.testing.assert_array_equal(luma(colours), expected[:, :, 0])  # tolerance 0: all 2^24 colours agree
    image = smooth_image(3, 29, 41)
    out = _stage(output_channels=3).run(image, {})
    np.testing.assert_array_equal(out, tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image)).numpy())
    np.testing.assert_array_equal(_stage(output_channels=1).run(image, {}), tf.image.rgb_to_grayscale(image).numpy())


def test_keras_cv_grayscale_differs_only_by_its_float_rounding(tf) -> None:
    keras_cv = pytest.importorskip("keras_cv")
    image = smooth_image(5, 33, 47)
    theirs = np.asarray(keras_cv.layers.Grayscale(output_channels=3)(image.astype(np.float32)))
    ours = _stage(output_channels=3).run(image, {}).astype(np.float64)
    # KerasCV computes Y in float on 0..255 values and keeps it unrounded; tf.image's uint8 path is
    # trunc(Y/255 · 255.5), which lies in [Y − 1, Y + 0.5]
    diff = ours - theirs
    assert diff.min() > -1.0 and diff.max() <= 0.5 + 1e-3


@pytest.mark.parametrize("output_channels", [None, 1])
def test_grey_input_is_the_identity(output_channels: int | None) -> None:
    grey = smooth_image(1, 17, 23, 1)
    out = _stage(output_channels=output_channels).run(grey, {})
    assert out is not grey and out.dtype == np.uint8
    np.testing.assert_array_equal(out, grey)
    np.testing.assert_array_equal(_stage(output_channels=3).run(grey, {}), np.repeat(grey, 3, axis=2))


def test_null_keeps_the_input_channels_and_p_is_a_coin() -> None:
    rgb = smooth_image(2, 15, 19)
    out = _stage().run(rgb, {})
    assert out.shape == rgb.shape and np.all(out == out[:, :, :1])
    half = _stage(p=0.5)
    draws = [half.draw(np.random.Generator(np.random.PCG64(s)), rgb.shape) for s in range(200)]
    assert {tuple(d) for d in draws} == {("applied",)} and 70 < sum(d["applied"] for d in draws) < 130
    assert all(half.run(rgb, d) is rgb for d in draws if not d["applied"])


@pytest.mark.parametrize("value", [2, 0, True, 3.0, "3", [3]])
def test_output_channels_validation(value: object) -> None:
    with pytest.raises(ConfigError, match=r"stages\[0\]\.grayscale\.output_channels: .*accepted: 1, 3, or null"):
        build_pipeline({"stages": [{"grayscale": {"output_channels": value}}]})
    with pytest.raises(ConfigError, match=r"stages\[0\]\.grayscale\.output_chanels: unknown key.*did you mean"):
        build_pipeline({"stages": [{"grayscale": {"output_chanels": 3}}]})


@pytest.mark.parametrize(("output_channels", "channels"), [(1, 3), (3, 1)])
def test_a_stage_that_changes_the_channel_count_is_refused_before_any_work(
        output_channels: int, channels: int) -> None:
    # p: 0.01 would skip the stage in a drawn dry run; the check must not depend on the coin
    pipeline = build_pipeline({"stages": [{"cutout": {}}, {"grayscale": {"output_channels": output_channels, "p": 0.01}}]})
    with pytest.raises(ConfigError, match=rf"stages\[1\]\.grayscale: returns {output_channels} channel\(s\) but the "
                                          rf"export has --channels {channels}"):
        dry_run(pipeline, channels)
    dry_run(build_pipeline({"stages": [{"grayscale": {"output_channels": channels}}]}), channels)
    dry_run(build_pipeline({"stages": [{"grayscale": {}}]}), channels)


def test_cli_exit_2_and_nothing_written(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 1})
    config = tmp_path / "p.yaml"
    config.write_text("stages:\n  - grayscale: {output_channels: 1}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(config), "--workers", "1", "--quiet"])
    assert res.exit_code == 2
    assert "stages[0].grayscale: returns 1 channel(s) but the export has --channels 3" in res.output
    assert not out.exists()


def test_exported_grey_copies_keep_three_channels(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 1})
    out = tmp_path / "out"
    api.export(str(src), out, encoding="png", workers=1, overrides={"copies": 1, "stages": [{"grayscale": {}}]})
    for rec in read_records(out):
        pixels = np.asarray(Image.open(io.BytesIO(rec["image"][0])))
        assert pixels.ndim == 3 and pixels.shape[2] == 3
        grey = bool(np.all(pixels == pixels[:, :, :1]))
        assert grey == (rec["copy"][0] == 1)
