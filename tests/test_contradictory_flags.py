"""Flags that contradict each other or would be ignored, outputs that would land in SOURCE, damaged
outputs a user wants back: each is a clean error naming the flag (exit 2) or a clean recovery."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from augexport.cli import main
from augexport.errors import UsageError
from augexport.quiet import quiet_stderr
from tests.conftest import make_class_folder


def _run(*args: str) -> object:
    return CliRunner().invoke(main, [*args])


@pytest.mark.parametrize(("flags", "needle"), [
    (["--resume", "--overwrite"], "--resume and --overwrite are exclusive"),
    (["--beam-option", "direct_num_workers=2"], "applies with --runner beam only"),
    (["--data-dir", "somewhere"], "--data-dir somewhere applies to tfds: sources only"),
    (["--name", "a/b"], "--name 'a/b' is not accepted"),
    (["--name", " "], "is not accepted; accepted: a dataset name"),
])
def test_contradictory_or_ignored_export_flags_exit_2(tmp_path: Path, flags: list[str], needle: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    res = _run("export", str(src), str(tmp_path / "out"), "--workers", "1", *flags)
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_overwrite_replaces_an_unreadable_manifest(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 2})
    out = tmp_path / "out"
    assert _run("export", str(src), str(out), "--workers", "1").exit_code == 0
    (out / "augexport.json").write_text("{torn")
    res = _run("export", str(src), str(out), "--workers", "1")
    assert res.exit_code == 2 and "not a readable augexport manifest" in res.output
    assert "pass --overwrite to replace it" in res.output
    res = _run("export", str(src), str(out), "--workers", "1", "--overwrite")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "augexport.json").read_text())["splits"]["train"]["counts"]["written"] == 4
    assert _run("inspect", str(out), "--verify").exit_code == 0


def test_preview_never_writes_inside_source(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    res = _run("preview", str(src), "-o", str(src / "a" / "grid.png"))
    assert res.exit_code == 2 and "inside SOURCE" in res.output
    assert not (src / "a" / "grid.png").exists()


def test_preview_checks_class_names_as_export_does(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"cat": 2})
    cfg = tmp_path / "c.yaml"
    cfg.write_text("classes:\n  dog: {copies: 3}\n")
    res = _run("preview", str(src), "-o", str(tmp_path / "g.png"), "--config", str(cfg))
    assert res.exit_code == 2 and "unknown class name(s) 'dog'" in res.output and "cat" in res.output
    assert not (tmp_path / "g.png").exists()


def test_compare_checks_workers_before_any_work(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 4, "b": 4})
    res = _run("compare", str(src), str(tmp_path / "cmp"), "--workers", "0")
    assert res.exit_code == 2 and "--workers 0 is not accepted" in res.output
    assert not (tmp_path / "cmp").exists()


def test_a_run_that_writes_nothing_says_so(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    for f in (src / "a").iterdir():
        f.write_bytes(b"not an image")
    res = _run("export", str(src), str(tmp_path / "out"), "--workers", "1")
    assert res.exit_code == 0
    assert "warning: no records written: every input was skipped; the reasons are in errors-train.jsonl" in res.output


def test_duplicate_keys_in_a_pipeline_file_are_refused(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    for name, text in (("p.yaml", "copies: 2\nseed: 1\ncopies: 3\n"), ("p.json", '{"copies": 2, "copies": 3}')):
        (tmp_path / name).write_text(text)
        res = _run("export", str(src), str(tmp_path / "out"), "--config", str(tmp_path / name))
        assert res.exit_code == 2 and "key 'copies' appears twice" in res.output, res.output
    (tmp_path / "m.yaml").write_text("base: &b {rotation_range: 10}\nstages:\n  - keras:\n      <<: *b\n"
                                     "      zoom_range: 0.1\n")
    res = _run("export", str(src), str(tmp_path / "out"), "--config", str(tmp_path / "m.yaml"), "--workers", "1")
    assert "appears twice" not in res.output  # a merge key is not a duplicate


def test_exponents_are_numbers_in_files_and_flags_and_quoted_numbers_get_a_hint(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads `1e1` and `1.0e1` as text; augexport reads them as YAML 1.2 and JSON do."""
    from tests.helpers import shard_hashes

    src = make_class_folder(tmp_path / "src", {"a": 2})
    outs = []
    for i, text in enumerate(["rotation_range: 10", "rotation_range: 1e1", "rotation_range: 1.0e1"]):
        (tmp_path / f"p{i}.yaml").write_text(f"stages:\n  - keras: {{{text}}}\n")
        res = _run("export", str(src), str(tmp_path / f"out{i}"), "--config", str(tmp_path / f"p{i}.yaml"),
                   "--workers", "1")
        assert res.exit_code == 0, res.output
        outs.append(shard_hashes(tmp_path / f"out{i}"))
    for i, value in ((3, "10"), (4, "1e1")):  # the flag, without a file
        res = _run("export", str(src), str(tmp_path / f"out{i}"), "--rotation-range", value, "--workers", "1")
        assert res.exit_code == 0, res.output
        outs.append(shard_hashes(tmp_path / f"out{i}"))
    assert outs[1] == outs[0] and outs[2] == outs[0] and outs[4] == outs[3]
    (tmp_path / "q.yaml").write_text('copies: "3"\n')
    res = _run("export", str(src), str(tmp_path / "outq"), "--config", str(tmp_path / "q.yaml"))
    assert res.exit_code == 2 and "(it is text: write the number without quotes)" in res.output, res.output


def test_tta_shift_out_of_the_frame_and_a_repeated_flip(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    res = _run("tta", str(src), str(tmp_path / "o"), "--variants", "shift:64,0", "--image-size", "64")
    assert res.exit_code == 2 and "out of the frame" in res.output and "|DY| < 64" in res.output
    res = _run("tta", str(src), str(tmp_path / "o"), "--variants", "hflip,hflip")
    assert res.exit_code == 2 and "given twice" in res.output and "d4" not in res.output
    res = _run("tta", str(src), str(tmp_path / "o"), "--variants", "d4,hflip")
    assert res.exit_code == 2 and "d4 already holds" in res.output
    assert not (tmp_path / "o").exists()


def test_inspect_exits_1_when_it_lists_problems_and_names_an_interrupted_run(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3})
    out = tmp_path / "out"
    assert _run("export", str(src), str(out), "--workers", "1").exit_code == 0
    shard = next(out.glob("src-train.tfrecord-*"))
    shard.write_bytes(shard.read_bytes()[:-7])
    res = _run("inspect", str(out))
    assert res.exit_code == 1 and shard.name in res.output
    half = tmp_path / "half"
    half.mkdir()
    (half / ".augexport-progress-train.json").write_text("{}")
    res = _run("inspect", str(half))
    assert res.exit_code == 2 and "interrupted run" in res.output and "--resume" in res.output


def test_tta_merge_names_a_file_that_is_not_npy(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    out = tmp_path / "o"
    assert _run("tta", str(src), str(out), "--variants", "hflip", "--workers", "1").exit_code == 0
    (tmp_path / "p.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    res = _run("tta-merge", str(out), "--split", "test", "--predictions", str(tmp_path / "p.png"))
    assert res.exit_code == 2 and "is not a .npy file" in res.output and "pickled" not in res.output


def test_quiet_stderr_replays_library_lines_for_failures_only(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError), quiet_stderr():
        os.write(2, b"library chatter\n")
        raise UsageError("the user's mistake")
    with pytest.raises(RuntimeError), quiet_stderr():
        os.write(2, b"what the library said\n")
        raise RuntimeError("boom")
    sys.stderr.flush()
    err = capfd.readouterr().err
    assert "library chatter" not in err and "what the library said" in err


def test_the_mix_flag_names_none_among_its_values(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    res = _run("export", str(src), str(tmp_path / "out"), "--mix", "cutup")
    assert res.exit_code == 2 and "accepted: cutmix, mixup, none" in res.output
