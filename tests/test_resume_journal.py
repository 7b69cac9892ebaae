"""The resume room: journal snapshots, untrusted journals, images-only runs, kills while
finalizing and during --overwrite, all resumed to the bytes of an uninterrupted run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from augexport import api, resume, run
from augexport.cli import main
from augexport.errors import ExportFailed
from augexport.naming import TEMP_LABELS_FILE
from augexport.outdir import OutDir
from tests.conftest import make_class_folder
from tests.helpers import manifest

KW: dict[str, Any] = dict(workers=1, fmt="both", shard_size="4KiB", overrides={"copies": 2, "stages": [{"cutout": {}}]})


def _all_files(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != "augexport.json"}


def _problems(out: Path) -> list[str]:
    """What `inspect --verify` names (the file of each problem)."""
    res = CliRunner().invoke(main, ["inspect", str(out), "--verify"])
    assert res.exit_code in (0, 1), res.output
    return [line.strip().split(":")[0] for line in res.output.splitlines() if line.startswith("  ")]


def _interrupt_once(monkeypatch: pytest.MonkeyPatch, owner: Any, target: str) -> None:
    """Make `owner.<target>` raise KeyboardInterrupt once, like a Ctrl-C at that moment."""
    real = getattr(owner, target)
    calls = {"n": 0}

    def boom(*a: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(owner, target, boom)


def test_journal_states_are_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 30, "b": 30})
    saved: list[dict] = []
    real_remove = resume.Journal.remove

    def keep(self: resume.Journal) -> None:  # read the journal just before it is removed
        saved.extend(json.loads(self.outdir.read_bytes(self.name))["shards"])
        real_remove(self)

    monkeypatch.setattr(resume.Journal, "remove", keep)
    api.export(str(src), tmp_path / "out", workers=1, shard_size="4KiB", overrides={"copies": 1, "stages": [{"cutout": {}}]})
    written = [s["state"]["written"] for s in saved]
    totals = [sum(s["state"]["label_counts"]) for s in saved]
    assert len(saved) > 3 and written == sorted(written) and totals == written


def test_images_only_run_is_resumable(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3})
    out = tmp_path / "out"
    (out / "images" / ".tmp-train").mkdir(parents=True)  # what an interrupted --format images run leaves
    (out / "images" / ".tmp-train" / "partial.jpg").write_bytes(b"x")
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--format", "images", "--workers", "1"])
    assert res.exit_code == 2 and "--resume" in res.output
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--format", "images", "--workers", "1", "--resume"])
    assert res.exit_code == 0, res.output
    assert len(list((out / "images" / "train" / "a").iterdir())) == 3


@pytest.mark.parametrize("owner,target", [(run, "write_manifest"), (run, "write_metadata"),
                                          (OutDir, "write_atomic"), (run, "rename_final")])
def test_killed_while_finalizing_format_both_resumes_to_the_clean_output(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, owner: Any, target: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 5, "b": 4})
    api.export(str(src), tmp_path / "clean", **KW)
    out = tmp_path / "out"
    _interrupt_once(monkeypatch, owner, target)
    with pytest.raises(KeyboardInterrupt):
        api.export(str(src), out, **KW)
    api.export(str(src), out, resume=True, **KW)
    assert _all_files(out) == _all_files(tmp_path / "clean")
    assert CliRunner().invoke(main, ["inspect", str(out), "--verify"]).exit_code == 0


def _interrupt_at_shard(monkeypatch: pytest.MonkeyPatch, shard: int) -> None:
    """A Ctrl-C as the run is about to journal its `shard`-th shard (the ones before it are kept)."""
    real, calls = resume.Journal.record, {"n": 0}

    def record(self: resume.Journal, *a: Any, **kw: Any) -> None:
        calls["n"] += 1
        if calls["n"] == shard:
            raise KeyboardInterrupt
        real(self, *a, **kw)

    monkeypatch.setattr(resume.Journal, "record", record)


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_resume_writes_again_a_kept_records_image_file_lost_or_changed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 6, "b": 6})
    api.export(str(src), tmp_path / "clean", **KW)
    out = tmp_path / "out"
    _interrupt_at_shard(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        api.export(str(src), out, **KW)
    monkeypatch.undo()
    temp = out / "images" / ".tmp-train"
    kept = (temp / TEMP_LABELS_FILE).read_text().splitlines()[1:]  # the rows of the journaled shards
    assert len(kept) >= 3
    victim = temp / kept[1].split(",")[0]  # a file of a kept record
    if damage == "deleted":
        victim.unlink()
    else:
        victim.write_bytes(victim.read_bytes() + b"\0\0")
    api.export(str(src), out, resume=True, **KW)
    assert _all_files(out) == _all_files(tmp_path / "clean")
    assert CliRunner().invoke(main, ["inspect", str(out), "--verify"]).exit_code == 0


def test_interrupted_overwrite_resumes_and_replaces_the_old_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 5, "b": 4})
    new = {**KW, "overrides": {**KW["overrides"], "seed": 5}}
    api.export(str(src), tmp_path / "clean", **new)
    out = tmp_path / "out"
    api.export(str(src), out, **KW)  # the old split
    _interrupt_once(monkeypatch, run, "rename_final")  # after the old split was retired, before the renames
    with pytest.raises(KeyboardInterrupt):
        api.export(str(src), out, overwrite=True, **new)
    # the manifest no longer lists the deleted split; nothing it lists is missing, and the
    # interrupted run is the one problem named
    assert _problems(out) == [".augexport-progress-train.json"]
    api.export(str(src), out, resume=True, **new)  # no --overwrite needed to finish it
    assert _all_files(out) == _all_files(tmp_path / "clean")
    assert CliRunner().invoke(main, ["inspect", str(out), "--verify"]).exit_code == 0


def test_kill_during_overwrite_never_leaves_a_manifest_listing_deleted_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 4})
    out = tmp_path / "out"
    api.export(str(src), out, **KW)
    api.export(str(src), out, split="test", **KW)
    real_remove = OutDir.remove
    calls = {"n": 0}

    def remove_then_die(self: OutDir, name: str) -> None:  # killed after the first old file went
        real_remove(self, name)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(OutDir, "remove", remove_then_die)
    with pytest.raises(KeyboardInterrupt):
        api.export(str(src), out, overwrite=True, **{**KW, "overrides": {**KW["overrides"], "seed": 2}})
    monkeypatch.setattr(OutDir, "remove", real_remove)
    m = json.loads((out / "augexport.json").read_text())
    assert set(m["splits"]) == {"test"}  # the replaced split left the manifest before its files went
    assert _problems(out) == [".augexport-progress-train.json"]  # only the interrupted run, named


def test_resuming_an_images_run_with_other_arguments_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 5})
    out = tmp_path / "out"
    _interrupt_once(monkeypatch, run, "retire")
    with pytest.raises(KeyboardInterrupt):
        api.export(str(src), out, workers=1, fmt="images", overrides={"copies": 3, "stages": [{"cutout": {}}]})
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--format", "images", "--copies", "1",
                                    "--resume", "--workers", "1"])
    assert res.exit_code == 2 and "different" in res.output and "pipeline" in res.output


def _interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    src = make_class_folder(tmp_path / "src", {"a": 6, "b": 6})
    out = tmp_path / "out"
    _interrupt_once(monkeypatch, run, "retire")
    with pytest.raises(KeyboardInterrupt):
        api.export(str(src), out, **KW)
    return src, out


@pytest.mark.parametrize("damage", [
    lambda j: {**j, "shards": [{**s, "records": "many"} for s in j["shards"]]},
    lambda j: {**j, "shards": [{**s, "state": {"written": []}} for s in j["shards"]]},
    lambda j: {**j, "identity": ["not", "a", "mapping"]},
    lambda j: [j],
])
def test_journal_with_wrong_types_starts_over_and_still_gives_the_clean_bytes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: Any) -> None:
    src, out = _interrupted_run(tmp_path, monkeypatch)
    journal = out / ".augexport-progress-train.json"
    journal.write_text(json.dumps(damage(json.loads(journal.read_text()))))
    api.export(str(src), out, resume=True, **KW)
    api.export(str(src), tmp_path / "clean", **KW)
    assert _all_files(out) == _all_files(tmp_path / "clean")


def test_journal_naming_files_outside_out_is_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, out = _interrupted_run(tmp_path, monkeypatch)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "precious.bin").write_bytes(b"keep me")
    digest = hashlib.sha256(b"keep me").hexdigest()
    journal = out / ".augexport-progress-train.json"
    data = json.loads(journal.read_text())
    data["shards"][0]["file"] = "../sentinel/precious.bin"
    data["shards"][0]["sha256"] = digest
    data["replaces"] = ["../sentinel/precious.bin", "/etc/hostname"]
    journal.write_text(json.dumps(data))
    api.export(str(src), out, resume=True, **KW)
    assert (sentinel / "precious.bin").read_bytes() == b"keep me" and len(list(sentinel.iterdir())) == 1
    api.export(str(src), tmp_path / "clean", **KW)
    assert _all_files(out) == _all_files(tmp_path / "clean")


def test_disk_full_while_finalizing_leaves_nothing_final_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 5, "b": 4})
    out = tmp_path / "out"
    real = OutDir.write_atomic

    def full(self: OutDir, name: str, data: bytes) -> None:
        if name == "augexport.json":
            raise OSError(28, "No space left on device")
        real(self, name, data)

    monkeypatch.setattr(OutDir, "write_atomic", full)
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--format", "both",
                                    "--shard-size", "4KiB", "--copies", "2", "--rotation-range", "10"])
    assert res.exit_code == 1 and "No space left on device" in res.output and "--resume" in res.output
    assert "Traceback" not in res.output
    assert not list(out.glob("*.tfrecord-*-of-*")) and not (out / "images" / "train").exists()
    assert not (out / "augexport.json").exists()
    monkeypatch.setattr(OutDir, "write_atomic", real)
    args = ["--workers", "1", "--format", "both", "--shard-size", "4KiB", "--copies", "2", "--rotation-range", "10"]
    assert CliRunner().invoke(main, ["export", str(src), str(out), "--resume", *args]).exit_code == 0
    assert CliRunner().invoke(main, ["export", str(src), str(tmp_path / "clean"), *args]).exit_code == 0
    assert _all_files(out) == _all_files(tmp_path / "clean")


def test_disk_full_inside_the_abort_path_is_still_a_clean_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from augexport.sinks import tfrecord

    src = make_class_folder(tmp_path / "src", {"a": 6})
    real_write = tfrecord._HashingFile.write
    calls = {"n": 0}

    def failing_write(self: object, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real_write(self, data)  # type: ignore[arg-type]

    real_unlink = OutDir.unlink

    def unlink(self: OutDir, name: str) -> None:  # the disk is full by the time the run cleans up
        if calls["n"] >= 3:
            raise OSError(28, "No space left on device")
        real_unlink(self, name)

    monkeypatch.setattr(tfrecord._HashingFile, "write", failing_write)
    monkeypatch.setattr(OutDir, "unlink", unlink)
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--workers", "1", "--shard-size", "1KiB"])
    assert res.exit_code == 1 and "No space left on device" in res.output and "Traceback" not in res.output


def test_a_failed_finalize_of_an_overwrite_does_not_claim_nothing_changed(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--overwrite retires the old split before the new one is in place: a write error after that
    must not say 'nothing was finalized', and --resume completes the run."""
    src = make_class_folder(tmp_path / "src", {"a": 5, "b": 4})
    out = tmp_path / "out"
    api.export(str(src), out, **KW)
    real = OutDir.write_atomic

    def full(self: OutDir, name: str, data: bytes) -> None:
        if name == "augexport.json":
            calls.append(name)
            if len(calls) > 1:  # the retire's manifest went in; the final one does not
                raise OSError(28, "No space left on device")
        real(self, name, data)

    calls: list[str] = []
    monkeypatch.setattr(OutDir, "write_atomic", full)
    new = {**KW, "overrides": {**KW["overrides"], "seed": 9}}
    with pytest.raises(ExportFailed, match="may already be gone") as info:
        api.export(str(src), out, overwrite=True, **new)
    assert "nothing was finalized" not in str(info.value) and "--resume" in str(info.value)
    monkeypatch.setattr(OutDir, "write_atomic", real)
    api.export(str(src), out, resume=True, **new)
    api.export(str(src), tmp_path / "clean", **new)
    assert _all_files(out) == _all_files(tmp_path / "clean")


def _interrupted(src: Path, out: Path, monkeypatch: pytest.MonkeyPatch, **kw: Any) -> None:
    """An export into OUT stopped by a Ctrl-C as its third shard is journaled."""
    with monkeypatch.context() as m:
        _interrupt_at_shard(m, 3)
        with pytest.raises(KeyboardInterrupt):
            api.export(str(src), out, **{**KW, **kw})


def test_resume_with_another_name_or_another_class_set_is_refused_naming_it(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's entries were judged by this run's --name and classes: they looked malformed,
    the interrupted run was dropped in silence and its temporary shards stayed for good."""
    src = make_class_folder(tmp_path / "src", {"a": 6, "b": 6})
    out = tmp_path / "out"
    _interrupted(src, out, monkeypatch)
    kept = sorted(p.name for p in out.iterdir())
    with pytest.raises(api.UsageError, match=r"different --name \('src' then, 'other' now\)"):
        api.export(str(src), out, resume=True, name="other", **KW)
    make_class_folder(src, {"emu": 2})
    with pytest.raises(api.UsageError, match=r"different SOURCE contents"):
        api.export(str(src), out, resume=True, **KW)
    assert sorted(p.name for p in out.iterdir()) == kept  # the interrupted run is still there to resume


def test_a_resumed_split_joins_the_manifest_in_out_now_or_is_refused(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A split interrupted in an empty OUT, resumed after train finished there, wrote a manifest
    of itself alone (train lost); one interrupted beside train, resumed after --overwrite replaced
    the whole output with other classes, joined a manifest its labels do not fit."""
    src = make_class_folder(tmp_path / "src", {"a": 6, "b": 6})
    out = tmp_path / "out"
    _interrupted(src, out, monkeypatch, split="val")
    with pytest.raises(api.UsageError, match="holds an interrupted run of split 'val' and no finished split yet"):
        api.export(str(src), out, **KW)  # it said "not empty and has no augexport.json"
    api.export(str(src), out, overwrite=True, **KW)  # train, beside the interrupted val
    api.export(str(src), out, resume=True, split="val", **KW)
    assert sorted(manifest(out)["splits"]) == ["train", "val"]
    assert CliRunner().invoke(main, ["inspect", str(out), "--verify"]).exit_code == 0
    other = make_class_folder(tmp_path / "other", {"x": 6, "y": 6, "z": 2})
    out2 = tmp_path / "out2"
    api.export(str(src), out2, **KW)
    _interrupted(src, out2, monkeypatch, split="val")
    api.export(str(other), out2, overwrite=True, name="src", **KW)  # the whole output, classes x, y, z
    with pytest.raises(api.UsageError, match=r"now holds dataset 'src' with classes \['x', 'y', 'z'\].*cannot join"):
        api.export(str(src), out2, resume=True, split="val", **KW)
    res = CliRunner().invoke(main, ["inspect", str(out2), "--verify"])  # only the interrupted val is named
    assert res.exit_code == 1 and "1 problem(s)" in res.output and ".augexport-progress-val.json" in res.output


def test_resume_of_a_finished_split_names_what_differs(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    api.export(str(src), tmp_path / "out", workers=1)
    with pytest.raises(api.UsageError, match=r"written with a different --quality \(95 then, 80 now\)"):
        api.export(str(src), tmp_path / "out", workers=1, resume=True, quality=80)
    with pytest.raises(api.UsageError, match=r"written with other arguments or another source"):
        api.export(str(src), tmp_path / "out", workers=1, resume=True, max_pixels=10**6)  # not in the manifest
    assert api.export(str(src), tmp_path / "out", workers=1, resume=True).written == 4  # the same: nothing to do
