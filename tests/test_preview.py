"""`augexport preview`: the contact sheet's size, its captions' data, and that its cells are the
records export writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from augexport.cli import main
from augexport.preview import CELL, grid_size, preview_rows, soft_caption
from tests.conftest import make_class_folder
from tests.helpers import read_records

PIPELINE = """
version: 1
seed: 3
stages:
  - tf_image:
      - random_flip_left_right: {}
      - random_brightness: {max_delta: 0.3}
      - central_crop: {central_fraction: [0.6, 1.0]}
  - cutout: {size: 0.3, p: 0.5}
mix: {method: cutmix, alpha: 1.0, p: 0.7}
"""


def test_preview_writes_grid_of_expected_size(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3, "b": 2})
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PIPELINE)
    out = tmp_path / "grid.png"
    res = CliRunner().invoke(main, ["preview", str(src), "--config", str(cfg), "-n", "4", "--copies", "3", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "preview of 4 image(s) x 3 copies" in res.output
    with Image.open(out) as img:
        assert img.format == "PNG"
        assert img.size == grid_size(4, 3, CELL)
        pixels = np.asarray(img.convert("RGB"))
    assert pixels.std() > 5  # thumbnails and captions were drawn, not an empty canvas


def test_preview_n_larger_than_source_and_custom_cell(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 1, "b": 1})
    out = tmp_path / "g.png"
    res = CliRunner().invoke(main, ["preview", str(src), "-n", "8", "--copies", "2", "--cell", "64", "-o", str(out)])
    assert res.exit_code == 0, res.output
    with Image.open(out) as img:
        assert img.size == grid_size(2, 2, 64)


def test_preview_cells_are_the_exported_records(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 4, "b": 3, "c": 3})
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PIPELINE)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--copies", "2",
                                    "--encoding", "png", "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    exported = {(r["source_id"][0], r["copy"][0]): r for r in read_records(out)}
    class_names, rows = preview_rows(str(src), str(cfg), n=5, copies=2)
    assert class_names == ["a", "b", "c"]
    mixed = 0
    for row in rows:
        assert [f["copy"][0] for f in row.records] == [0, 1, 2]
        for feats in row.records:
            ref = exported[(row.source_id.encode(), feats["copy"][0])]
            assert feats["image"] == ref["image"]
            assert feats["params"] == ref["params"]
            assert np.array_equal(feats["soft_label"], ref["soft_label"])
            mixed += bool(feats["mix_source_id"][0])
    assert mixed > 0


def test_a_mixing_pipelines_own_copies_are_the_preview_default(tmp_path: Path) -> None:
    """Partners are drawn among the copies: with 4 cells for a 2-copy pipeline some partners were
    copies the export never writes, so the cells were not its records."""
    src = make_class_folder(tmp_path / "src", {"a": 4, "b": 3, "c": 3})
    cfg = tmp_path / "p.yaml"
    cfg.write_text(PIPELINE + "copies: 2\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--encoding", "png",
                                    "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    exported = {(r["source_id"][0], r["copy"][0]): r["image"] for r in read_records(out)}
    _, rows = preview_rows(str(src), str(cfg), n=10)
    assert all([f["copy"][0] for f in row.records] == [0, 1, 2] for row in rows)
    assert all(f["image"] == exported[(row.source_id.encode(), f["copy"][0])] for row in rows for f in row.records)
    plain = tmp_path / "plain.yaml"
    plain.write_text("copies: 2\nstages: [{cutout: {}}]\n")  # no mixing: each copy stands alone, 4 shown
    assert [len(row.records) for row in preview_rows(str(src), str(plain), n=2)[1]] == [5, 5]


def test_the_caption_names_the_first_entry_that_mixed() -> None:
    """A CutMix box of no pixels (lambda 1) does not count: MixUp after it made the mix."""
    from augexport.preview import _captions

    params = [{"stage": "mix", "method": "cutmix", "lambda": 1.0, "partner_copy": 1, "partner_source_id": "b/1.png"},
              {"stage": "mix", "method": "mixup", "lambda": 0.132, "partner_copy": 2}]
    feats = {"copy": [1], "params": [json.dumps(params).encode()], "mix_source_id": [b"c/2.png"],
             "mix_lambda": [np.float32(0.132)], "soft_label": np.array([0.132, 0.0, 0.868], np.float32), "label": [0]}
    assert _captions(feats, "a/0.png", ["a", "b", "c"])[1] == "copy 1, mixup lambda .13"


def test_soft_caption_top_classes() -> None:
    names = ["cat", "cup", "space"]
    assert soft_caption(np.array([0.71, 0.29, 0.0], np.float32), names) == "cat .71 / cup .29"
    assert soft_caption(np.array([0.0, 1.0, 0.0], np.float32), names) == "cup 1.00"


def test_preview_errors_exit_2(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 1, "b": 1})
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages:\n  - tf_image:\n      - random_hue: {max_delta: 2}\n")
    runner = CliRunner()
    res = runner.invoke(main, ["preview", str(src), "--config", str(bad), "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 2 and "stages[0].tf_image[0].random_hue.max_delta" in res.output
    res = runner.invoke(main, ["preview", str(src), "--copies", "0", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 2 and "--copies 0" in res.output
    res = runner.invoke(main, ["preview", str(src), "-o", str(tmp_path / "g.jpg")])
    assert res.exit_code == 2 and "PNG" in res.output
    res = runner.invoke(main, ["preview", str(src), "-o", str(tmp_path / "missing" / "g.png")])
    assert res.exit_code == 2 and "does not exist" in res.output
    for flag, value in (("--split", "train[:10%]"), ("--data-dir", str(tmp_path))):  # tfds: only, never ignored
        res = runner.invoke(main, ["preview", str(src), flag, value, "-o", str(tmp_path / "g.png")])
        assert res.exit_code == 2 and f"{flag} {value!r} applies to tfds: sources only" in res.output, res.output
    assert not list(tmp_path.glob("*.png"))


def test_a_grey_export_previews_grey(tmp_path: Path) -> None:
    """--channels 1: the cells are the grey export's records, and a stage that needs colour is exit 2
    before any rendering, as export's dry run makes it."""
    src = make_class_folder(tmp_path / "src", {"a": 3, "b": 2})
    cfg = tmp_path / "p.yaml"
    cfg.write_text("seed: 5\nstages:\n  - keras: {rotation_range: 20, horizontal_flip: true}\n  - cutout: {size: 0.3}\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--copies", "2",
                                    "--encoding", "png", "--channels", "1", "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    exported = {(r["source_id"][0], r["copy"][0]): r["image"] for r in read_records(out)}
    _, rows = preview_rows(str(src), str(cfg), n=5, copies=2, channels=1)
    assert all(f["image"] == exported[(row.source_id.encode(), f["copy"][0])] for row in rows for f in row.records)
    _, rgb = preview_rows(str(src), str(cfg), n=1, copies=1)
    assert rgb[0].records[0]["image"] != rows[0].records[0]["image"]
    res = CliRunner().invoke(main, ["preview", str(src), "--config", str(cfg), "--channels", "1", "-n", "2",
                                    "--copies", "1", "-o", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    colour = tmp_path / "colour.yaml"
    colour.write_text("stages:\n  - grayscale: {output_channels: 3}\n")
    for flags, needle in ((["--config", str(colour), "--channels", "1"], "must keep the export's channel count"),
                          (["--channels", "2"], "--channels 2 is not accepted; accepted: 1, 3")):
        res = CliRunner().invoke(main, ["preview", str(src), *flags, "-o", str(tmp_path / "h.png")])
        assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "h.png").exists()
