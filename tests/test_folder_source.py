"""Folder sources: class index = sorted folder names, what is listed and what is not, labels CSVs,
the fingerprint, and files that are not regular files (skipped, never hung on)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from augexport import api
from augexport.cli import main
from augexport.sources.folder import list_folder
from tests.conftest import make_class_folder


def test_classes_are_sorted_folder_names_and_hidden_or_foreign_files_are_not_listed(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"zebra": 1, "ant": 2})
    (src / "ant" / ".hidden.png").write_bytes((src / "ant" / "img_000.png").read_bytes())
    (src / "ant" / "notes.txt").write_text("not an image")
    (src / ".git").mkdir()
    (src / "zebra" / "nested").mkdir()
    (src / "zebra" / "nested" / "deep.png").write_bytes((src / "ant" / "img_000.png").read_bytes())
    listing = list_folder(src)
    assert listing.class_names == ["ant", "zebra"]
    assert [(it.source_id, it.label) for it in listing.items] == [
        ("ant/img_000.png", 0), ("ant/img_001.png", 0), ("zebra/img_000.png", 1), ("zebra/nested/deep.png", 1)]


def test_fingerprint_changes_when_a_file_is_rewritten_with_the_same_size(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    before = list_folder(src).fingerprint
    victim = src / "a" / "img_000.png"
    st = victim.stat()
    victim.write_bytes(victim.read_bytes())  # same size, same bytes, new mtime
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000))
    assert list_folder(src).fingerprint != before


def test_empty_label_in_csv_exits_2(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "tmp", {"x": 2})
    (tmp_path / "labels.csv").write_text("filename,label\nx/img_000.png,\n")
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--labels", str(tmp_path / "labels.csv")])
    assert res.exit_code == 2 and "empty filename or label" in res.output


@pytest.fixture
def alarm():  # a test that would hang forever fails instead
    def fail(*_a: object) -> None:
        raise TimeoutError("the export hung")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("rows, needle", [
    ("filename,label\nx/img_000.png,a,b\n", "row 2 has 3 columns but the header has 2"),
    ("filename,label\nimg_000.png,a\nimg_001.png,a\n",  # the class folder left out of the names
     "none of its 2 filenames exists under SOURCE"),
])
def test_labels_that_cannot_be_meant_exit_2_before_work(tmp_path: Path, rows: str, needle: str) -> None:
    src = make_class_folder(tmp_path / "src", {"x": 2})
    (tmp_path / "labels.csv").write_text(rows)
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--labels", str(tmp_path / "labels.csv")])
    assert res.exit_code == 2 and needle in res.output, res.output
    assert "SUBFOLDER/FILE" in res.output or "columns" in res.output
    assert not (tmp_path / "out").exists()


def test_files_that_are_not_regular_are_skipped_with_a_reason(tmp_path: Path, alarm: None) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    os.mkfifo(src / "a" / "fifo.jpg")
    (src / "a" / "folder.jpg").mkdir()  # a directory with an image name is walked into (and is empty)
    (src / "a" / "zero.png").symlink_to("/dev/zero")
    (src / "a" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "out"
    res = api.export(str(src), out, workers=1)
    assert res.written == 2 and res.skipped == 3
    errors = {e["source_id"]: e["error"] for e in map(json.loads, (out / "errors-train.jsonl").read_text().splitlines())}
    assert errors["a/fifo.jpg"] == "not a regular file (a FIFO); only regular files are read"
    assert errors["a/zero.png"] == "not a regular file (a character device); only regular files are read"
    assert errors["a/dangling.png"].startswith("cannot read file: No such file")


def test_max_file_bytes_skips_big_files_and_is_a_flag(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3}, size=(64, 64))
    big = max(p.stat().st_size for p in (src / "a").iterdir())
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--max-file-bytes", str(big - 1)])
    assert res.exit_code == 0, res.output
    errors = [json.loads(line) for line in (out / "errors-train.jsonl").read_text().splitlines()]
    assert errors and all("--max-file-bytes" in e["error"] for e in errors)
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "o2"), "--max-file-bytes", "12"])
    assert res.exit_code == 2 and "--max-file-bytes '12'" in res.output and "at least 1KiB" in res.output


def test_ignored_files_and_unreadable_folders_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 1})
    (src / "a" / "favicon.ico").write_bytes(b"\x00\x00\x01\x00")
    (src / "a" / ".DS_Store").write_bytes(b"x")
    (src / "b" / "locked").mkdir()
    real = os.scandir

    def scandir(path: object = ".") -> object:
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert "2 ignored (hidden or not image files" in res.output
    m = json.loads((out / "augexport.json").read_text())["splits"]["train"]
    assert m["ignored"] == [{"path": "a/.DS_Store", "why": "hidden file"},
                            {"path": "a/favicon.ico", "why": "not an image file name"}]
    errors = [json.loads(line) for line in (out / "errors-train.jsonl").read_text().splitlines()]
    assert errors == [{"source_id": "b/locked/", "error": "cannot list folder: Permission denied"}]


def test_class_folder_with_a_line_break_is_refused(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"ok": 1, "two\nlines": 1})
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out")])
    assert res.exit_code == 2 and "line break" in res.output and "'two\\nlines'" in res.output


def test_a_linked_class_folder_is_a_class_and_a_link_back_to_source_is_ignored(tmp_path: Path) -> None:
    elsewhere = make_class_folder(tmp_path / "elsewhere", {"cats": 3})
    src = make_class_folder(tmp_path / "src", {"dog": 2})
    (src / "cat").symlink_to(elsewhere / "cats", target_is_directory=True)  # the layout Keras follows
    (src / "up").symlink_to(tmp_path, target_is_directory=True)  # holds SOURCE: it would list SOURCE again
    out = tmp_path / "out"
    res = api.export(str(src), out, workers=1)
    m = json.loads((out / "augexport.json").read_text())
    assert m["class_names"] == ["cat", "dog"] and res.written == 5
    assert m["splits"]["train"]["ignored"] == [{"path": "up/", "why": "a link to SOURCE or a folder holding it"}]
