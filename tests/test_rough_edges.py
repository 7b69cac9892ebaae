"""Rough edges a new user hits: unusable OUT / -o targets, labels CSV headers, readable error
messages, third-party chatter on stderr, preview captions, `ops WORD`, range flags, tta-merge columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augexport import api
from augexport.cli import main
from augexport.ops import format_ops
from augexport.preview import _fit, ops_caption
from tests.conftest import ROOT, make_class_folder
from tests.helpers import manifest

RUNNER = CliRunner()


def _export(src: Path, out: str, *args: str) -> tuple[int, str]:
    res = RUNNER.invoke(main, ["export", str(src), out, "--workers", "1", "--quiet", *args])
    return res.exit_code, res.output


# -- OUT and -o targets ------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["parent_is_file", "proc", "too_long", "dangling_link", "sys"])
def test_unusable_out_is_exit_2_before_work(tmp_path: Path, sample_data: Path, case: str) -> None:
    (tmp_path / "afile").write_text("x")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    out, needle = {"parent_is_file": (str(tmp_path / "afile" / "sub"), "afile is a file, not a directory"),
                   "proc": ("/proc/augexport-out", "/proc is not writable"),
                   "too_long": (str(tmp_path / ("n" * 300)), "name is too long"),
                   "dangling_link": (str(tmp_path / "dangling"), "is a symbolic link to"),
                   "sys": ("/sys/augexport-out", "/sys is not writable")}[case]
    if case in ("proc", "sys") and not Path(out).parent.is_dir():
        pytest.skip(f"no {Path(out).parent} here")
    code, output = _export(sample_data, out)
    assert code == 2 and needle in output, output
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_exit_2(tmp_path: Path, sample_data: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    for out in (ro, ro / "sub"):
        code, output = _export(sample_data, str(out))
        assert code == 2 and "is not writable" in output


def test_preview_into_an_unwritable_place_is_exit_2_before_rendering(tmp_path: Path, sample_data: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import augexport.preview as preview

    monkeypatch.setattr(preview, "preview_rows", lambda *a, **k: pytest.fail("rendered before checking -o"))
    (tmp_path / "afile").write_text("x")
    for target, needle in (("/proc/grid.png", "/proc is not writable"), (str(tmp_path / "afile" / "g.png"), "afile is a file"),
                           (str(tmp_path), "is a directory")):
        res = RUNNER.invoke(main, ["preview", str(sample_data), "-o", target])
        assert res.exit_code == 2 and needle in res.output, res.output


# -- --labels CSV headers ----------------------------------------------------------------------
@pytest.mark.parametrize("header", ["filename,label", "file,class", "path,category", "class,image", ""])
def test_common_labels_headers_are_read_as_headers(tmp_path: Path, header: str) -> None:
    src = make_class_folder(tmp_path / "src", {"x": 3})
    names = ["x/img_000.png", "x/img_001.png", "x/img_002.png"]
    flip = header.startswith("class")
    rows = [f"{'cat' if i else 'dog'},{n}" if flip else f"{n},{'cat' if i else 'dog'}" for i, n in enumerate(names)]
    (tmp_path / "labels.csv").write_text("\n".join(([header] if header else []) + rows) + "\n")
    code, output = _export(src, str(tmp_path / "out"), "--labels", str(tmp_path / "labels.csv"))
    assert code == 0, output
    assert manifest(tmp_path / "out")["class_names"] == ["cat", "dog"]


def test_an_unknown_labels_header_is_named_not_made_a_class(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"x": 2})
    (tmp_path / "labels.csv").write_text("picture,kind\nx/img_000.png,a\nx/img_001.png,b\n")
    code, output = _export(src, str(tmp_path / "out"), "--labels", str(tmp_path / "labels.csv"))
    assert code == 2 and "header 'picture,kind' is not accepted" in output and "filename,label" in output


# -- errors file -------------------------------------------------------------------------------
def test_errors_file_names_no_python_object(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 1})
    (src / "a" / "broken.png").write_bytes(b"definitely not an image")
    code, output = _export(src, str(tmp_path / "out"))
    assert code == 0, output
    (line,) = (tmp_path / "out" / "errors-train.jsonl").read_text().splitlines()
    error = json.loads(line)
    assert error["source_id"] == "a/broken.png"
    assert "BytesIO" not in error["error"] and "object" not in error["error"] and "0x" not in error["error"]
    assert error["error"].startswith("not a readable image")


# -- third-party chatter -----------------------------------------------------------------------
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "AUGEXPORT_VERBOSE")}
    return subprocess.run([sys.executable, "-m", "augexport.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**env, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_tfds_source_prints_only_augexports_lines(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow_datasets")
    args = ["export", "tfds:sample_photos", str(tmp_path / "out"), "--data-dir", str(ROOT / "sample_tfds"),
            "--workers", "1", "--quiet"]
    quiet = _cli(*args)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout.startswith("augexport: ")
    loud = _cli(*args, "--overwrite", "--verbose")
    assert loud.returncode == 0
    assert "absl" in loud.stderr or "oneDNN" in loud.stderr or loud.stderr == ""  # what TF says, when it says it


def test_beam_runner_prints_only_augexports_lines(tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    res = _cli("export", str(ROOT / "sample_data"), str(tmp_path / "out"), "--runner", "beam", "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "" and res.stdout.startswith("augexport: ")


# -- preview -----------------------------------------------------------------------------------
def test_preview_enlarges_small_images_with_nearest() -> None:
    tile = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28, 1)
    img = _fit(tile, 160)
    assert img.size == (140, 140)  # 5x, the largest whole factor that fits
    assert np.array_equal(np.asarray(img)[::5, ::5, 0], tile[:, :, 0])
    assert _fit(np.zeros((400, 300, 3), np.uint8), 160).size == (120, 160)  # big ones still shrink


def test_preview_caption_names_what_each_copy_got() -> None:
    params = [{"stage": "keras", "params": {"theta": 4.2, "tx": 0.0, "ty": 0.0, "shear": 0.0, "zx": 1.0, "zy": 1.1,
                                            "flip_horizontal": True, "flip_vertical": False,
                                            "channel_shift_intensity": None, "brightness": None}},
              {"stage": "cutout", "params": {"applied": False}},
              {"stage": "tf_image", "params": {"ops": [{"op": "random_brightness", "delta": 0.1}]}},
              {"stage": "gridmask", "params": {"applied": True}},
              {"stage": "mix", "method": "cutmix", "lambda": 0.7}]
    assert ops_caption(params) == "rot zoom hflip + brightness + gridmask"


def test_preview_of_28px_arrays_draws_them_large(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 256, (4, 28, 28), dtype=np.uint8))
    np.save(tmp_path / "y.npy", np.arange(4) % 2)
    res = RUNNER.invoke(main, ["preview", f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}", "-n", "2",
                               "--copies", "1", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    sheet = np.asarray(Image.open(tmp_path / "g.png").convert("L"))
    cell = sheet[6 + 10:6 + 150, 6 + 10:6 + 150]  # inside the first 160-px cell, where a 140-px thumbnail sits
    assert (cell != 32).mean() > 0.95  # filled by the enlarged image, not background


# -- ops ---------------------------------------------------------------------------------------
def test_ops_word_filters_sections() -> None:
    keras = format_ops("keras")
    assert keras.startswith("keras: ") and "\ncutout:" not in keras and "zoom_range" in keras
    assert format_ops("zoom").splitlines()[0].startswith("keras: ")
    res = RUNNER.invoke(main, ["ops", "nosuchthing"])
    assert res.exit_code == 2 and "no stage, op or parameter contains it" in res.output
    assert "interpolation" in RUNNER.invoke(main, ["ops", "resize"]).output


def test_ops_columns_stay_aligned_within_each_section() -> None:
    """A long name or type widens its section's column instead of pushing its own row out of line."""
    from augexport.stages import builtin_stages

    sections = {block.split(": ", 1)[0]: block.splitlines()[1:] for block in format_ops().split("\n\n")}
    for name, cls in builtin_stages().items():
        rows = cls.ops_rows()
        lines = [next(line for line in sections[name] if line.startswith(f"  {(op + '.') if op else ''}{param} "))
                 for op, param, _, _ in rows]
        kind_at = {line.index(kind, 2 + len(f"{op}.{param}" if op else param))
                   for line, (op, param, kind, _) in zip(lines, rows, strict=True)}
        doc_at = {line.rindex(doc) for line, (_, _, _, doc) in zip(lines, rows, strict=True)}
        assert len(kind_at) <= 1 and len(doc_at) <= 1, (name, kind_at, doc_at)


# -- range flags -------------------------------------------------------------------------------
def test_range_flags_take_the_comma_form_and_errors_name_the_flag(tmp_path: Path, sample_data: Path) -> None:
    code, output = _export(sample_data, str(tmp_path / "a"), "--zoom-range", "0.9,1.1", "--brightness-range",
                           "0.8,1.2", "--copies", "1")
    assert code == 0, output
    keras = manifest(tmp_path / "a")["pipeline"]["stages"][0]["keras"]
    assert keras["zoom_range"] == [0.9, 1.1] and keras["brightness_range"] == [0.8, 1.2]
    code, output = _export(sample_data, str(tmp_path / "b"), "--zoom-range", "1.1,0.9")
    assert code == 2 and output.startswith("Error: --zoom-range: low 1.1 is greater than high 0.9"), output
    assert "stages[0]" not in output
    code, output = _export(sample_data, str(tmp_path / "c"), "--image-size", "0")
    assert code == 2 and "--image-size: '0' is not a size" in output


# -- tta-merge ---------------------------------------------------------------------------------
def test_tta_merge_refuses_more_columns_than_classes(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 1})
    out = tmp_path / "out"
    assert RUNNER.invoke(main, ["tta", str(src), str(out), "--variants", "identity,hflip", "--workers", "1"]).exit_code == 0
    for cols in (3, 1):
        np.save(tmp_path / "p.npy", np.full((6, cols), 1.0 / cols))
        res = RUNNER.invoke(main, ["tta-merge", str(out), "--predictions", str(tmp_path / "p.npy")])
        assert res.exit_code == 2 and (f"--predictions {tmp_path / 'p.npy'} have {cols} columns, but split 'test' has 2 classes (a, b)"
                                       in res.output)
    np.save(tmp_path / "p.npy", np.full((6, 2), 0.5))
    assert RUNNER.invoke(main, ["tta-merge", str(out), "--predictions", str(tmp_path / "p.npy")]).exit_code == 0
    assert api.inspect(out)["splits"]["test"]["records"] == 6


def test_preview_shows_the_end_of_long_source_ids() -> None:
    from PIL import ImageDraw, ImageFont

    from augexport.preview import _clip_left

    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    text = _clip_left(draw, "sample_photos-train.tfrecord-00000-of-00001__1234", ImageFont.load_default(), 100)
    assert text.startswith("...") and text.endswith("__1234")
