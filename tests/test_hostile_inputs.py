"""A corpus of hostile inputs, each with an asserted outcome, and bounded fuzzing of the decode path
and the pipeline loader: nothing makes augexport crash with a traceback, hang, or write outside OUT."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from augexport import codec
from augexport.cli import main
from augexport.errors import ConfigError, DecodeError
from augexport.pipeline import build_pipeline
from tests.conftest import smooth_image
from tests.helpers import manifest, read_records

RGB = smooth_image(3, 18, 26)


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,exact", [("BMP", True), ("TIFF", True), ("WEBP", False), ("GIF", False), ("PNG", True)])
def test_other_formats_decode(fmt: str, exact: bool) -> None:
    img = Image.fromarray(RGB)
    data = _save(img, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    out = codec.decode(data)
    assert out.shape == (18, 26, 3) and out.dtype == np.uint8
    if exact or fmt == "WEBP":
        np.testing.assert_array_equal(out, RGB)
    else:  # GIF quantizes to a 256-colour palette
        assert np.abs(out.astype(int) - RGB.astype(int)).mean() < 20


def test_animated_gif_uses_first_frame_and_1x1_image() -> None:
    frames = [Image.fromarray(np.full((5, 7, 3), v, np.uint8)) for v in (10, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert codec.decode(buf.getvalue())[0, 0, 0] == 10
    one = codec.decode(_save(Image.fromarray(np.array([[[1, 2, 3]]], np.uint8)), "PNG"))
    assert one.shape == (1, 1, 3) and one.tolist() == [[[1, 2, 3]]]
    assert codec.decode(_save(Image.fromarray(np.array([[[1, 2, 3]]], np.uint8)), "PNG"), size=(4, 4)).shape == (4, 4, 3)


def test_hostile_folder_end_to_end(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "ok").mkdir(parents=True)
    Image.fromarray(RGB).save(src / "ok" / "plain.png")
    Image.fromarray(RGB).save(src / "ok" / ("x" * 240 + ".png"))  # very long file name
    os.symlink(src, src / "ok" / "loop")  # a symlink loop is not followed
    weird = os.fsencode(str(src / "ok")) + b"/caf\xe9.png"  # non-UTF-8 file name
    with open(weird, "wb") as f:
        f.write(_save(Image.fromarray(RGB), "PNG"))
    (src / "ok" / "fake.jpg").write_text("hello")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--format", "both", "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "4 images in, 3 records out, 1 skipped" in res.output
    sids = sorted(r["source_id"][0] for r in read_records(out))
    assert b"ok/caf\xe9.png" in sids
    files = list((out / "images" / "train" / "ok").iterdir())
    assert len(files) == 3 and all(len(p.name.encode("utf-8", "surrogateescape")) <= 255 for p in files)
    assert json.loads((out / "errors-train.jsonl").read_text().strip())["source_id"] == "ok/fake.jpg"
    # nothing outside OUT: SOURCE holds what it held
    assert sorted(p.name for p in (src / "ok").iterdir()) == sorted(
        ["plain.png", "x" * 240 + ".png", "loop", os.fsdecode(b"caf\xe9.png"), "fake.jpg"])


def test_labels_csv_with_escaping_paths_and_dotdot_class(tmp_path: Path) -> None:
    src = tmp_path / "flat"
    src.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(RGB).save(src / name)
    Image.fromarray(RGB).save(tmp_path / "outside.png")
    (tmp_path / "labels.csv").write_text("filename,label\na.png,..\nb.png,x/../../y\n../outside.png,z\n/etc/passwd,z\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--labels", str(tmp_path / "labels.csv"),
                                    "--format", "both", "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    errors = [json.loads(line) for line in (out / "errors-train.jsonl").read_text().splitlines()]
    assert sorted(e["source_id"] for e in errors) == ["../outside.png", "/etc/passwd"]
    assert all("outside SOURCE" in e["error"] for e in errors)
    assert manifest(out)["class_names"] == ["..", "x/../../y", "z"]
    counts = manifest(out)["splits"]["train"]["counts"]
    assert (counts["source"], counts["written"], counts["skipped"]) == (4, 2, 2)  # every row counted in
    written = sorted(p.relative_to(out).as_posix() for p in (out / "images").rglob("*.jpg"))
    assert written == ["images/train/_/a__c0.jpg", "images/train/x_.._.._y/b__c0.jpg"]
    assert not list(tmp_path.glob("*.jpg")) and not (tmp_path / "images").exists()


# -- bounded fuzzing --------------------------------------------------------------------------
_SEEDS = [_save(Image.fromarray(RGB), f) for f in ("PNG", "JPEG", "GIF", "BMP")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SEEDS), st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=8),
       st.integers(0, 4000))
def test_fuzz_decode_never_crashes(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for pos, val in flips:
        if pos < len(data):
            data[pos] = val
    data = bytes(data[: max(cut, 1)])
    try:
        out = codec.decode(data, max_pixels=4_000_000)
    except DecodeError:
        return
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3


_json = st.recursive(st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=True) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=12)
_keys = st.sampled_from(["version", "seed", "copies", "include_original", "image_size", "stages", "mix", "label_smoothing"])
_stage = st.dictionaries(st.sampled_from(["cutout", "keras", "imgaug", "tf_image", "gridmask", "bogus"]), _json,
                         min_size=1, max_size=1)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json | st.lists(_stage, max_size=3), max_size=6))
def test_fuzz_pipeline_loader_only_raises_config_errors(spec: dict) -> None:
    try:
        build_pipeline(spec)
    except ConfigError as exc:
        assert str(exc)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_pipeline_file_text(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    from augexport.api import resolve_pipeline

    path = tmp_path_factory.mktemp("cfg") / "p.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        resolve_pipeline(path)
    except ConfigError as exc:
        assert str(path) in str(exc)
