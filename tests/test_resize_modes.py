"""Keras' resize modes: `interpolation`, `crop_to_aspect_ratio`, `pad_to_aspect_ratio` against
`keras.utils.image_dataset_from_directory` itself, on the same files.

Tolerance (measured): the stored pixel is Keras' float pixel clipped to [0, 255] and rounded, for
every interpolation: |ours − clip(keras)| <= 0.5 + 1e-3 (the kernels are TF's own; the float32
differences are < 2e-4). Lanczos and bicubic overshoot [0, 255] in Keras' float output; a uint8
image cannot, so the comparison is with the clipped value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augexport import api, codec
from augexport.cli import main
from augexport.errors import ConfigError
from augexport.pipeline import build_pipeline
from augexport.resize import INTERPOLATIONS, ResizeMode, keras_resize, resample
from tests.helpers import read_records

SIZES = [(37, 53), (64, 30), (20, 20), (15, 90), (81, 17)]
TOLERANCE = 0.5 + 1e-3


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    root = tmp_path_factory.mktemp("resize") / "src"
    (root / "a").mkdir(parents=True)
    rng = np.random.default_rng(1)
    images = []
    for i, (h, w) in enumerate(SIZES):
        img = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        Image.fromarray(img).save(root / "a" / f"{i}.png")
        images.append(img)
    return root, images


def _keras_images(root: Path, size: tuple[int, int], **kw: object) -> list[np.ndarray]:
    keras = pytest.importorskip("keras")
    ds = keras.utils.image_dataset_from_directory(str(root), labels=None, image_size=size, shuffle=False,
                                                  batch_size=None, verbose=False, **kw)
    return [np.asarray(x) for x in ds]


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("fit", ["stretch", "crop", "pad"])
def test_keras_modes_match_image_dataset_from_directory(folder: tuple[Path, list[np.ndarray]], interpolation: str,
                                                        fit: str) -> None:
    root, images = folder
    size = (24, 32)
    refs = _keras_images(root, size, interpolation=interpolation, crop_to_aspect_ratio=fit == "crop",
                         pad_to_aspect_ratio=fit == "pad")
    mode = ResizeMode(interpolation, fit == "crop", fit == "pad")
    for img, ref in zip(images, refs, strict=True):
        got = keras_resize(img, size, mode)
        assert got.shape == (*size, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(np.float64) - np.clip(ref, 0, 255)).max() <= TOLERANCE


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_kernels_equal_tf_image_resize_up_and_down(interpolation: str) -> None:
    tf = pytest.importorskip("tensorflow")
    rng = np.random.default_rng(7)
    for _ in range(6):
        h, w = (int(v) for v in rng.integers(3, 70, 2))
        th, tw = (int(v) for v in rng.integers(2, 70, 2))
        img = rng.integers(0, 256, (h, w, 2)).astype(np.uint8)
        ref = tf.image.resize(img, (th, tw), method=interpolation).numpy()
        assert np.abs(resample(img, (th, tw), interpolation) - ref).max() < 1e-3, (h, w, th, tw)


def test_jpeg_source_is_decoded_at_full_size_as_keras_does(tmp_path: Path) -> None:
    """The default stretch decodes big JPEGs DCT-downscaled; Keras' modes must not (Keras decodes in full)."""
    root = tmp_path / "src"
    (root / "a").mkdir(parents=True)
    yy, xx = np.mgrid[0:300, 0:400]
    img = np.stack([(xx // 3) % 256, (yy // 2) % 256, (xx + yy) % 256], 2).astype(np.uint8)
    Image.fromarray(img).save(root / "a" / "big.jpg", quality=92)
    ref = _keras_images(root, (32, 32), interpolation="area", crop_to_aspect_ratio=True)[0]
    data = (root / "a" / "big.jpg").read_bytes()
    got = codec.Decoder(3, (32, 32), mode=ResizeMode("area", crop_to_aspect_ratio=True))(data)
    assert np.abs(got.astype(np.float64) - ref).max() <= TOLERANCE


def test_export_writes_the_keras_resized_pixels(folder: tuple[Path, list[np.ndarray]], tmp_path: Path) -> None:
    root, images = folder
    api.export(str(root), tmp_path / "out", workers=1, encoding="png", shuffle=False,
               overrides={"image_size": [16, 16], "pad_to_aspect_ratio": True, "interpolation": "bicubic"})
    records = read_records(tmp_path / "out")
    for img, rec in zip(images, records, strict=True):
        want = keras_resize(img, (16, 16), ResizeMode("bicubic", pad_to_aspect_ratio=True))
        assert np.array_equal(codec.decode(rec["image"][0]), want)


def test_no_resize_keys_keep_the_stretch_and_the_resolved_pipeline() -> None:
    """Without the new keys nothing changes: the same spec and the OpenCV stretch (the golden
    output hashes check the bytes of whole exports)."""
    pipe = build_pipeline({"image_size": [20, 30]})
    assert not pipe.resize.keras
    assert not {"interpolation", "crop_to_aspect_ratio", "pad_to_aspect_ratio"} & set(pipe.to_spec())
    img = np.random.default_rng(0).integers(0, 256, (90, 61, 3)).astype(np.uint8)
    assert np.array_equal(codec.Decoder(3, (20, 30)).pixels(img), codec.resize(img, (20, 30)))
    spec = build_pipeline({"image_size": [20, 30], "crop_to_aspect_ratio": True}).to_spec()
    assert spec["crop_to_aspect_ratio"] is True and "interpolation" not in spec


@pytest.mark.parametrize("spec, path", [
    ({"image_size": 8, "crop_to_aspect_ratio": True, "pad_to_aspect_ratio": True}, "pad_to_aspect_ratio"),
    ({"interpolation": "bilinear"}, "interpolation"),
    ({"image_size": 8, "interpolation": "cubic"}, "interpolation"),
    ({"image_size": 8, "crop_to_aspect_ratio": "yes"}, "crop_to_aspect_ratio"),
])
def test_bad_resize_keys_name_their_key(spec: dict[str, object], path: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_pipeline(spec)
    assert err.value.path == path


def test_resize_flags_are_checked_and_named(tmp_path: Path, sample_data: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["export", str(sample_data), str(tmp_path / "o"), "--image-size", "16",
                               "--interpolation", "cubic"])
    assert res.exit_code == 2 and "--interpolation: 'cubic' is not accepted" in res.output
    res = runner.invoke(main, ["export", str(sample_data), str(tmp_path / "o"), "--crop-to-aspect-ratio"])
    assert res.exit_code == 2 and "--crop-to-aspect-ratio: applies when images are resized" in res.output
    res = runner.invoke(main, ["export", str(sample_data), str(tmp_path / "o"), "--image-size", "16", "--quiet",
                               "--crop-to-aspect-ratio", "--interpolation", "nearest", "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert api.inspect(tmp_path / "o")["splits"]["train"]["records"] == 30
