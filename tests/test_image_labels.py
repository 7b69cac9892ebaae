"""`--format images|both` keeps every record's labels: `images/SPLIT/labels.csv`, one row per image
file in record order, pinned by the manifest; `inspect` counts and `--verify` checks the files."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from augexport import api
from augexport.cli import main
from augexport.errors import VerifyFailed
from augexport.sinks import images as images_sink
from tests.conftest import make_class_folder
from tests.helpers import manifest, read_records

KW: dict[str, Any] = dict(workers=1, shard_size="4KiB", overrides={
    "copies": 2, "stages": [{"keras": {"rotation_range": 20}}], "mix": {"method": "cutmix", "p": 0.7}})


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "images" / "train" / "labels.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def both(tmp_path: Path) -> Path:
    src = make_class_folder(tmp_path / "src", {"a": 5, "b": 4, "c": 3})
    api.export(str(src), tmp_path / "out", fmt="both", **KW)
    return tmp_path / "out"


def test_labels_csv_has_one_row_per_image_in_record_order(both: Path) -> None:
    rows, records = _rows(both), read_records(both)
    assert len(rows) == len(records) == 36
    for row, rec in zip(rows, records, strict=True):
        image = (both / "images" / "train" / row["file"]).read_bytes()
        assert image == rec["image"][0] and row["sha256"] == hashlib.sha256(image).hexdigest()
        assert int(row["label"]) == rec["label"][0] and row["source_id"] == rec["source_id"][0].decode()
        soft = np.asarray([float(row[f"soft_label_{i}"]) for i in range(3)], np.float32)
        assert np.array_equal(soft, rec["soft_label"])
        assert np.float32(row["mix_lambda"]) == rec["mix_lambda"][0]
        assert row["mix_source_id"] == rec["mix_source_id"][0].decode()
        assert json.loads(row["params"]) == json.loads(rec["params"][0])
        assert (int(row["copy"]), row["variant"]) == (rec["copy"][0], rec["variant"][0].decode())
    assert any(r["mix_source_id"] for r in rows), "the pipeline mixes: some rows must carry a partner"
    entry = manifest(both)["splits"]["train"]["images"]
    labels = (both / "images" / "train" / "labels.csv").read_bytes()
    assert entry == {"dir": "images/train", "files": 36, "labels_file": "labels.csv",
                     "labels_sha256": hashlib.sha256(labels).hexdigest(), "labels_bytes": len(labels)}


def test_images_only_split_is_counted_by_inspect(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3, "b": 2})
    api.export(str(src), tmp_path / "out", fmt="images", **KW)
    report = api.inspect(tmp_path / "out", verify=True)
    split = report["splits"]["train"]
    assert split["records"] == split["images"] == 15 and split["label_histogram"] == {"a": 9, "b": 6}
    assert split["mixed_fraction"] > 0


@pytest.mark.parametrize("damage", ["flip", "missing", "extra", "labels"])
def test_verify_finds_damaged_image_files(both: Path, damage: str) -> None:
    rows = _rows(both)
    victim = both / "images" / "train" / rows[5]["file"]
    if damage == "flip":
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01
        victim.write_bytes(bytes(data))
    elif damage == "missing":
        victim.unlink()
    elif damage == "extra":
        (victim.parent / "planted.jpg").write_bytes(b"x")
    else:
        with open(both / "images" / "train" / "labels.csv", "a") as f:
            f.write("\n")
    with pytest.raises(VerifyFailed) as err:
        api.inspect(both, verify=True)
    needle = {"flip": f"{rows[5]['file']}: sha256", "missing": f"{rows[5]['file']}: missing",
              "extra": "planted.jpg: not listed", "labels": "labels.csv: sha256"}[damage]
    assert needle in str(err.value)
    if damage == "missing":  # a missing file is a problem even without --verify
        assert any("missing" in p for p in api.inspect(both)["problems"])
    res = CliRunner().invoke(main, ["inspect", str(both), "--verify"])
    assert res.exit_code == 1 and needle in res.output


def test_resume_after_an_interrupt_mid_run_gives_the_clean_labels(tmp_path: Path, both: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    out = tmp_path / "resumed"
    real = images_sink.ImageFolderWriter.write
    calls = {"n": 0}

    def boom(self: Any, *a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 20:  # after some shards closed (4KiB shards of a few records each)
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(images_sink.ImageFolderWriter, "write", boom)
    with pytest.raises(KeyboardInterrupt):
        api.export(str(src), out, fmt="both", **KW)
    journal = json.loads((out / ".augexport-progress-train.json").read_text())
    assert journal["shards"], "the interrupt must come after a finished shard for this test to mean anything"
    monkeypatch.setattr(images_sink.ImageFolderWriter, "write", real)
    api.export(str(src), out, fmt="both", resume=True, **KW)
    for name in ("images/train/labels.csv", *[f"images/train/{r['file']}" for r in _rows(both)]):
        assert (out / name).read_bytes() == (both / name).read_bytes(), name
    api.inspect(out, verify=True)


def test_a_class_named_like_the_labels_file_gets_its_own_folder(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"labels.csv": 2, "b": 1})
    api.export(str(src), tmp_path / "out", fmt="images", workers=1)
    assert (tmp_path / "out" / "images" / "train" / "labels.csv").is_file()
    assert len(list((tmp_path / "out" / "images" / "train" / "labels.csv_").iterdir())) == 2
    api.inspect(tmp_path / "out", verify=True)


def test_resumed_labels_rows_survive_a_second_kill_before_the_next_shard(tmp_path: Path) -> None:
    """--resume rewrites the kept labels rows; a run killed again before its next shard (the rows
    never flushed) must leave them on disk, or the next --resume finds fewer rows than the journal."""
    import subprocess
    import sys

    from augexport.naming import TEMP_LABELS_FILE, SplitNames
    from tests.conftest import ROOT

    out = tmp_path / "out"
    temp = out / SplitNames("ds", "train").temp_images_dir
    temp.mkdir(parents=True)
    header = images_sink.labels_header(2)
    rows = [[f"a/img{i:04d}__c1.jpg", "0", "1.0", "0.0", "", "1.0", "[]", f"img{i:04d}", "1", "augmented", "0" * 64]
            for i in range(600)]  # ~60 KB: more than one write buffer
    with open(temp / TEMP_LABELS_FILE, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])
    killed = ("import os, sys\nfrom augexport.outdir import OutDir\nfrom augexport.naming import SplitNames\n"
              "from augexport.sinks.images import ImageFolderWriter\n"
              "ImageFolderWriter(OutDir(sys.argv[1]), SplitNames('ds', 'train'), num_classes=2, keep_rows=600)\n"
              "os._exit(0)  # as a kill: no flush, no close\n")
    done = subprocess.run([sys.executable, "-c", killed, str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(temp / TEMP_LABELS_FILE, newline="") as f:
        assert list(csv.reader(f)) == [header, *rows]
