"""Nothing outside OUT is ever touched, whatever is planted in OUT; OUT has one writer at a time.

Every test plants files or links in OUT that point at a sentinel folder outside it, runs augexport,
and asserts the sentinel is byte-for-byte unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from augexport import api
from augexport.cli import main
from augexport.outdir import OutDir
from tests.conftest import ROOT, make_class_folder


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


@pytest.fixture
def sentinel(tmp_path: Path) -> Path:
    folder = tmp_path / "sentinel"
    (folder / "sub").mkdir(parents=True)
    (folder / "precious.txt").write_text("do not touch")
    (folder / "sub" / "data.bin").write_bytes(os.urandom(64))
    return folder


def _export(src: Path, out: Path, *args: str) -> object:
    return CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--quiet", *args])


@pytest.mark.parametrize("planted", [".tmp-augexport.json", ".tmp-errors-train.jsonl", ".tmp-src-train.tfrecord-00000",
                                     ".augexport-progress-train.json", ".tmp-features.json", ".augexport.lock"])
def test_links_under_temporary_names_are_never_written_through(tmp_path: Path, sentinel: Path, planted: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3})
    out = tmp_path / "out"
    out.mkdir()
    target = sentinel / "precious.txt"
    (out / planted).symlink_to(target)
    before = _snapshot(sentinel)
    res = _export(src, out)
    if planted == ".augexport.lock":
        assert res.exit_code == 0, res.output  # a link at the lock's name is removed, never followed
    else:  # a link is never augexport's own temporary: refused until --overwrite or --resume removes it
        assert res.exit_code == 2 and ("not empty" in res.output or "interrupted run" in res.output), res.output
        res = _export(src, out, "--overwrite" if planted.startswith(".tmp-a") else "--resume")
        assert res.exit_code == 0 or "--overwrite" in res.output, res.output
        if res.exit_code:
            assert _export(src, out, "--overwrite").exit_code == 0
    assert _snapshot(sentinel) == before
    assert api.inspect(out, verify=True)["problems"] == []


def test_images_folder_that_is_a_link_is_refused(tmp_path: Path, sentinel: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3})
    out = tmp_path / "out"
    out.mkdir()
    (out / "images").symlink_to(sentinel, target_is_directory=True)
    before = _snapshot(sentinel)
    res = _export(src, out, "--format", "images")
    assert res.exit_code == 2 and "not empty" in res.output, res.output
    res = _export(src, out, "--format", "images", "--overwrite")
    assert res.exit_code == 2 and "images is a symbolic link" in res.output, res.output
    assert _snapshot(sentinel) == before


def _tampered_manifest(tmp_path: Path, edit: object) -> tuple[Path, Path]:
    src = make_class_folder(tmp_path / "src", {"a": 3})
    out = tmp_path / "out"
    assert _export(src, out).exit_code == 0
    m = json.loads((out / "augexport.json").read_text())
    edit(m)  # type: ignore[operator]
    (out / "augexport.json").write_text(json.dumps(m))
    return src, out


@pytest.mark.parametrize("edit", [
    lambda m: m["splits"]["train"]["shards"][0].update(file="../sentinel/precious.txt"),
    lambda m: m["splits"]["train"].update(errors_file="../sentinel/sub/data.bin"),
    lambda m: m["splits"].update({"../../sentinel": m["splits"]["train"]}),
    lambda m: m["splits"]["train"]["shards"].append({"file": "/etc/hostname", "records": 1, "bytes": 1, "sha256": "x"}),
    lambda m: m.update(name="../sentinel"),
])
def test_manifest_naming_files_outside_out_is_refused_by_overwrite_and_verify(
        tmp_path: Path, sentinel: Path, edit: object) -> None:
    src, out = _tampered_manifest(tmp_path, edit)
    before = _snapshot(sentinel)
    res = _export(src, out, "--overwrite")
    assert res.exit_code == 2 and "not a valid augexport manifest" in res.output
    res = CliRunner().invoke(main, ["inspect", str(out), "--verify"])
    assert res.exit_code == 2 and "not a valid augexport manifest" in res.output
    assert _snapshot(sentinel) == before


def test_verify_does_not_read_through_a_link_planted_as_a_shard(tmp_path: Path, sentinel: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3})
    out = tmp_path / "out"
    assert _export(src, out).exit_code == 0
    shard = next(out.glob("src-train.tfrecord-*"))
    shard.unlink()
    shard.symlink_to(sentinel / "precious.txt")
    res = CliRunner().invoke(main, ["inspect", str(out), "--verify"])
    assert res.exit_code == 1 and "not a regular file" in res.output


def test_a_second_run_into_a_locked_out_exits_2_naming_the_holder(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3})
    out = tmp_path / "out"
    out.mkdir()
    with OutDir(out).lock():
        for args in ([], ["--overwrite"], ["--resume"]):
            res = _export(src, out, *args)
            assert res.exit_code == 2 and "being written by another augexport run" in res.output
            assert f"pid {os.getpid()}" in res.output
    assert _export(src, out).exit_code == 0
    assert not (out / ".augexport.lock").exists()


def test_overwrite_while_another_export_runs_leaves_the_running_one_intact(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 60, "b": 60}, size=(96, 128))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "augexport.cli", "export", str(src), str(out), "--workers", "1", "--copies", "20",
           "--rotation-range", "30", "--encoding", "png", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (out / ".augexport.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run([*cmd, "--overwrite"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert first.poll() is None, "the first export ended before the second started: make it longer"
    assert second.returncode == 2 and "being written by another augexport run" in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read() if first.stderr else ""
    assert api.inspect(out, verify=True)["splits"]["train"]["records"] == 120 * 21


def test_source_rewritten_with_the_same_size_is_noticed_by_resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from augexport import run

    src = make_class_folder(tmp_path / "src", {"a": 6})
    out = tmp_path / "out"
    kw = dict(workers=1, shard_size="2KiB", overrides={"copies": 1, "stages": [{"cutout": {}}]})
    monkeypatch.setattr(run, "retire", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        api.export(str(src), out, **kw)
    monkeypatch.undo()
    victim = src / "a" / "img_002.png"
    data = bytearray(victim.read_bytes())
    st = victim.stat()
    data[-20] ^= 0xFF  # same size, other bytes
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(api.UsageError, match=r"different SOURCE contents \(files added, removed or changed\);"):
        api.export(str(src), out, resume=True, **kw)
