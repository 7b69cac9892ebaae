"""The labels rows of an image folder are durable with every shard, on a local disk and in an
object store, so that a run killed (once, or again right after a resume) resumes with exactly the
rows of the records it keeps, and finishes with the labels.csv an uninterrupted run writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from augexport.errors import UsageError
from augexport.objstore import open_outdir
from augexport.sinks.label_rows import open_rows

HEADER = ["file", "label", "sha256"]


def _row(i: int) -> list[str]:
    return [f"c/img{i:04d}, with \"quotes\"\n and a newline.jpg", str(i % 3), f"{i:064x}"]


def _life(out: Any, keep: int, rows: range, shards: int) -> Any:
    """One life of a run: keep `keep` rows, add `rows` in `shards` flushed groups, then die (no finish)."""
    w = open_rows(out, "images/.tmp-train", HEADER, keep)
    assert w.kept == keep
    per = max(1, len(rows) // shards)
    for k, i in enumerate(rows, start=1):
        w.add(_row(i))
        if k % per == 0:
            w.flush()
    return w


def _expected(n: int) -> bytes:
    import csv
    import io

    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n").writerows([HEADER, *(_row(i) for i in range(n))])
    return buf.getvalue().encode()


def _check_lives(out: Any) -> None:
    _life(out, 0, range(0, 40), 4)          # killed with 40 rows durable (4 shards)...
    _life(out, 30, range(30, 30), 1)        # ...the journal had 30: resumed, killed before its next shard
    _life(out, 30, range(30, 37), 1)        # resumed again, 7 more rows in a shard, killed
    with pytest.raises(UsageError, match="holds 37 labels rows of the 50 records kept"):
        open_rows(out, "images/.tmp-train", HEADER, 50)
    last = _life(out, 37, range(37, 60), 2)
    done = last.finish()
    assert out.read_bytes(done) == _expected(60)
    assert sorted(out.entries("images/.tmp-train")) == ["labels.csv"]


def test_local_rows_survive_repeated_kills(tmp_path: Path) -> None:
    out = open_outdir(str(tmp_path / "out"))
    out.prepare()
    _check_lives(out)


def test_object_store_rows_survive_repeated_kills(s3: tuple[Any, str]) -> None:
    _, bucket = s3
    out = open_outdir(f"s3://{bucket}/out")
    out.prepare()
    _check_lives(out)


def test_object_store_rows_resume_from_a_kill_while_finish_deletes(s3: tuple[Any, str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """finish() puts labels.csv whole, then deletes base and parts one by one: killed in between,
    the resume reads labels.csv, not the parts that happen to be left."""
    _, bucket = s3
    out = open_outdir(f"s3://{bucket}/out")
    out.prepare()
    _life(out, 0, range(0, 30), 3)
    w = _life(out, 30, range(30, 40), 2)
    real, calls = out.unlink, []

    def killed_after_two(name: str) -> None:
        if len(calls) == 2:
            raise KeyboardInterrupt  # the kill
        calls.append(name)
        real(name)

    monkeypatch.setattr(out, "unlink", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        w.finish()
    monkeypatch.setattr(out, "unlink", real)
    assert len(calls) == 2
    done = open_rows(out, "images/.tmp-train", HEADER, 40).finish()
    assert out.read_bytes(done) == _expected(40)


def test_a_folder_renamed_in_an_object_store_loses_its_marker_first(s3: tuple[Any, str]) -> None:
    """Copied marker last, deleted marker first: a folder with its marker is complete at every
    moment, so a resume never takes back a half-deleted folder (and drops the complete copy)."""
    from augexport.naming import IMAGES_MARKER

    fs, bucket = s3
    out = open_outdir(f"s3://{bucket}/out")
    out.prepare()
    for name in ("a/1.jpg", "a/2.jpg", "b/3.jpg", IMAGES_MARKER):
        out.put(f"images/.tmp-train/{name}", name.encode())
    deleted: list[str] = []
    real = out.fs.rm_file
    out.fs.rm_file = lambda path, **kw: (deleted.append(path.rpartition("/")[2]), real(path, **kw))[1]
    try:
        out.rename("images/.tmp-train", "images/train")
    finally:
        out.fs.rm_file = real
    assert deleted[0] == IMAGES_MARKER and len(deleted) == 4
    assert sorted(p.rpartition("/")[2] for p in fs.find(f"{bucket}/out/images/train")) == \
        sorted(["1.jpg", "2.jpg", "3.jpg", IMAGES_MARKER])
    assert not fs.find(f"{bucket}/out/images/.tmp-train")
