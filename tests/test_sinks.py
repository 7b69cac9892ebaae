"""Sinks: TFRecord shards (temporary names until finalize, shard assignment, abort), the image
folder (colliding stems, partial files, replacing an older folder) and OutDir's write rules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from augexport.cli import main
from augexport.naming import SplitNames, image_file
from augexport.outdir import OutDir
from augexport.records import read_tfrecords
from augexport.sinks.images import ImageFolderWriter, images_owner
from augexport.sinks.tfrecord import ShardWriter
from tests.conftest import smooth_image

NAMES = SplitNames("ds", "train")


def _writer(out: Path, **kw: object) -> ShardWriter:
    return ShardWriter(OutDir(out), NAMES, **kw)  # type: ignore[arg-type]


def test_num_shards_assigns_by_planned_index_and_writes_empty_shards(tmp_path: Path) -> None:
    w = _writer(tmp_path, planned_total=10, num_shards=4)
    for i in (0, 1, 2, 5, 9):  # 3, 4, 6, 7, 8 were skipped inputs
        w.write(i, f"r{i}".encode())
    assert not list(tmp_path.glob("ds-train.tfrecord-*"))  # nothing final before finalize
    infos = w.finalize()
    assert [i.file for i in infos] == [f"ds-train.tfrecord-{k:05d}-of-00004" for k in range(4)]
    assert [i.records for i in infos] == [3, 0, 1, 1]  # record i goes to shard i * 4 // 10
    for info in infos:
        data = (tmp_path / info.file).read_bytes()
        assert info.bytes == len(data) and info.sha256 == hashlib.sha256(data).hexdigest()
    assert not list(tmp_path.glob(".tmp-*"))


def test_shard_size_rolls_over_after_the_limit_and_an_empty_split_has_one_shard(tmp_path: Path) -> None:
    w = _writer(tmp_path / "a", planned_total=6, shard_bytes=10)
    (tmp_path / "a").mkdir()
    for i in range(6):
        w.write(i, b"x" * 4)  # 4, 8, 12 -> rollover after the third record
    assert [i.records for i in w.finalize()] == [3, 3]
    (tmp_path / "b").mkdir()
    infos = _writer(tmp_path / "b", planned_total=0).finalize()
    assert [(i.file, i.records, i.bytes) for i in infos] == [("ds-train.tfrecord-00000-of-00001", 0, 0)]


def test_abort_removes_temporaries_or_keeps_closed_shards_for_resume(tmp_path: Path) -> None:
    closed: list[str] = []
    w = _writer(tmp_path, planned_total=6, shard_bytes=8, on_shard_closed=lambda info, last: closed.append(info.file))
    for i in range(5):
        w.write(i, b"y" * 4)
    w.abort(keep_finished=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == closed == [".tmp-ds-train.tfrecord-00000", ".tmp-ds-train.tfrecord-00001"]
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_shards_are_read_back_record_for_record(tmp_path: Path) -> None:
    w = _writer(tmp_path, planned_total=3, compression="gzip")
    frames = []
    from augexport.records import frame

    for i in range(3):
        frames.append(frame(f"payload {i}".encode()))
        w.write(i, frames[-1])
    (info,) = w.finalize()
    from augexport.reader import shard_records

    assert list(shard_records(OutDir(tmp_path), info.file, "gzip")) == [f"payload {i}".encode() for i in range(3)]
    import gzip

    with gzip.open(tmp_path / info.file) as f:
        assert list(read_tfrecords(f)) == [f"payload {i}".encode() for i in range(3)]


def test_open_new_replaces_a_planted_link_instead_of_writing_through_it(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".tmp-x").symlink_to(target)
    with OutDir(out).open_new(".tmp-x") as f:
        f.write(b"new")
    assert target.read_text() == "keep" and not (out / ".tmp-x").is_symlink()
    (out / "y").symlink_to(target)
    OutDir(out).write_atomic("y", b"data")
    assert target.read_text() == "keep" and (out / "y").read_bytes() == b"data"
    with pytest.raises(OSError):
        OutDir(out).path("../escape")


def test_image_folder_is_renamed_into_place_and_replaces_an_older_one(tmp_path: Path) -> None:
    outdir = OutDir(tmp_path)
    old = ImageFolderWriter(outdir, NAMES, "old-run")
    old.write(image_file(NAMES, "cat", "cat/a.png", 0, "jpg"), b"old")
    old.finalize()
    new = ImageFolderWriter(outdir, NAMES, "new-run")
    new.write(image_file(NAMES, "cat", "cat/b.png", 1, "jpg"), b"new")
    assert (tmp_path / "images" / "train" / "cat" / "a__c0.jpg").read_bytes() == b"old"  # until finalize
    (tmp_path / "images" / ".tmp-train" / "cat" / ".tmp-partial.jpg").write_bytes(b"cut short")
    ImageFolderWriter(outdir, NAMES, "new-run")  # a resumed run drops files cut short by a kill
    assert not (tmp_path / "images" / ".tmp-train" / "cat" / ".tmp-partial.jpg").exists()
    new.finalize()
    assert sorted(p.name for p in (tmp_path / "images" / "train" / "cat").iterdir()) == ["b__c1.jpg"]
    assert images_owner(outdir, NAMES.images_dir) == "new-run"


def test_long_non_ascii_names_fit_in_255_bytes(tmp_path: Path) -> None:
    sid = "클래스/" + "/".join(["아주긴폴더이름" * 4] * 3) + "/사진.png"
    rel = image_file(NAMES, "클래스" * 40, sid, 12, "jpg")
    assert all(len(part.encode()) <= 255 for part in rel.split("/"))
    assert rel != image_file(NAMES, "클래스" * 40, sid.replace("사진", "사진2"), 12, "jpg")


def test_colliding_image_names_all_land(tmp_path: Path) -> None:
    root = tmp_path / "coll" / "a"
    (root / "x").mkdir(parents=True)
    for name in ("img.png", "img.jpg", "x/y.png", "x_y.png", "ok.png"):
        Image.fromarray(smooth_image(len(name), 12, 16)).save(root / name)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(tmp_path / "coll"), str(out), "--format", "images", "--workers", "1"])
    assert res.exit_code == 0, res.output
    files = sorted(p.name for p in (out / "images" / "train" / "a").iterdir())
    assert len(files) == 5 and "ok__c0.jpg" in files
    assert sum(1 for f in files if f.startswith("img_")) == 2 and sum(1 for f in files if f.startswith("x_y_")) == 2


def test_deep_non_ascii_folders_export_as_images(tmp_path: Path) -> None:
    deep = tmp_path / "src" / "분류" / ("가나다라마바사" * 5) / ("아자차카타파하" * 5) / ("ㄱㄴㄷㄹ" * 8)
    deep.mkdir(parents=True)
    Image.fromarray(smooth_image(1, 12, 16)).save(deep / ("이미지" * 10 + ".png"))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(tmp_path / "src"), str(out), "--format", "images", "--workers", "1"])
    assert res.exit_code == 0, res.output
    (image,) = [p for p in (out / "images" / "train").rglob("*.jpg")]
    assert len(image.name.encode()) <= 255 and os.path.getsize(image) > 0
