"""Usage errors: exit 2 before any work, naming the flag or key and what is accepted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from augexport.cli import main
from tests.conftest import make_class_folder


def test_invalid_manifest_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "augexport.json").write_text(json.dumps({"splits": {"train": {}}}))
    res = CliRunner().invoke(main, ["inspect", str(tmp_path)])
    assert res.exit_code == 2 and "not a valid augexport manifest" in res.output


@pytest.mark.parametrize("args,needle", [
    (["--shard-size", "0.5"], "at least 1KiB"),
    (["--label-smoothing", "nan"], "finite number"),
    (["--mix", "cutmix", "--mix-alpha", "inf"], "finite number"),
    (["--max-pixels", "0"], "--max-pixels 0 is not accepted"),
    (["--split", "s" * 101], "(at most 100)"),  # with the dataset name, a shard name past 255 bytes
    (["--name", "n" * 101], "at most 100"),
    (["--split", ""], "--split '' is not a valid split name"),
    (["--workers", "10000"], "--workers 10000 is not accepted; accepted: 1 to "),  # Ctrl-C waited for 10,000 starts
    (["--workers", "0"], "--workers 0 is not accepted; accepted: 1 to "),
])
def test_bad_flag_values_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--workers", "1", *args])
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_stage_that_cannot_work_with_the_channels_is_exit_2_before_work(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps({"stages": [{"imgaug": [{"AddToHueAndSaturation": {"value": [-10, 10]}}]}]}))
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--config", str(cfg), "--channels", "1"])
    assert res.exit_code == 2 and "stages[0].imgaug" in res.output and "1 channel" in res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("wrap", ["Sometimes", "OneOf"])
def test_a_colour_augmenter_a_meta_augmenter_may_skip_is_still_exit_2_with_one_channel(tmp_path: Path,
                                                                                       wrap: str) -> None:
    """The probe's own draw may skip the child; every leaf also runs alone, or each image fails."""
    src = make_class_folder(tmp_path / "src", {"a": 2})
    child = [{"AddToHueAndSaturation": {"value": [-10, 10]}}]
    step = {"Sometimes": {"p": 0.01, "then": child}} if wrap == "Sometimes" else {"OneOf": {"children": [{"Fliplr": {}}, *child]}}
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps({"stages": [{"imgaug": [step]}]}))
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--config", str(cfg), "--channels", "1"])
    assert res.exit_code == 2 and "stages[0].imgaug" in res.output and "AddToHueAndSaturation" in res.output, res.output
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out3"), "--config", str(cfg), "--workers", "1"])
    assert res.exit_code == 0, res.output


def test_missing_imgaug_is_a_usage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.util

    from augexport import imgaug_compat

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imgaug" else real(name, *a))
    monkeypatch.setattr(imgaug_compat, "_PATCHED", False)
    with pytest.raises(Exception) as info:
        imgaug_compat.import_imgaug()
    assert "requirements/imgaug.txt" in str(info.value) and getattr(info.value, "exit_code", None) == 2


def test_a_long_source_folder_name_makes_a_dataset_name_that_fits(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / ("Q" * 200), {"a": 2})
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--workers", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "augexport.json").read_text())["name"] == "q" * 100


def test_a_failed_run_removes_the_parent_folders_it_made_for_out(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "there").mkdir()
    res = CliRunner().invoke(main, ["export", str(tmp_path / "empty"), str(tmp_path / "there" / "p" / "q" / "out")])
    assert res.exit_code == 2 and "no class sub-folders" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "there"]
    assert list((tmp_path / "there").iterdir()) == []  # p/q/ went with OUT; what was there stays


@pytest.mark.parametrize("call, needle", [
    ("export", "export(): unknown keyword argument 'workres'; did you mean workers"),
    ("tta", "tta(): unknown keyword argument 'workres'; did you mean workers"),
    ("preview", "preview(): unknown keyword argument 'copis'; did you mean copies"),
    ("tta_merge", "tta_merge(): unknown keyword argument 'metod'; did you mean method"),
])
def test_a_misspelt_keyword_of_the_python_api_is_a_usage_error_naming_it(tmp_path: Path, call: str,
                                                                          needle: str) -> None:
    """It was a TypeError from ExportOptions or an internal function the caller never named."""
    from augexport import api

    src = str(make_class_folder(tmp_path / "src", {"a": 2}))
    calls = {"export": lambda: api.export(src, tmp_path / "out", workres=1),
             "tta": lambda: api.tta(src, tmp_path / "out", variants="hflip", workres=1),
             "preview": lambda: api.preview(src, tmp_path / "g.png", copis=2),
             "tta_merge": lambda: api.tta_merge(tmp_path / "out", "test", [[1.0]], metod="mean")}
    with pytest.raises(api.UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        calls[call]()
    assert not (tmp_path / "out").exists() and not (tmp_path / "g.png").exists()


def test_an_array_or_a_number_where_a_path_goes_is_named(tmp_path: Path) -> None:
    """An array as SOURCE failed as 'cannot write in OUT: File name too long' (exit 1), an int OUT
    became the folder ./123."""
    import numpy as np

    from augexport import api

    with pytest.raises(api.UsageError, match=r"SOURCE must be a path .* not ndarray; for numpy arrays call export_arrays"):
        api.export(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "out")
    with pytest.raises(api.UsageError, match="OUT must be a path or URL .* not int"):
        api.export(str(make_class_folder(tmp_path / "src", {"a": 1})), 123)
    assert not (tmp_path / "out").exists() and not Path("123").exists()


@pytest.mark.parametrize("kw, needle", [({"workers": "2"}, "--workers '2' is not accepted; accepted: an integer"),
                                        ({"quality": 95.0}, "--quality 95.0 is not accepted"),
                                        ({"overrides": [1, 2]}, "overrides list is not accepted; accepted: a mapping")])
def test_python_callers_wrong_types_are_usage_errors(tmp_path: Path, kw: dict, needle: str) -> None:
    """The CLI's parser guarantees these types; from Python they were TypeErrors deep inside."""
    import numpy as np

    from augexport import api

    src = str(make_class_folder(tmp_path / "src", {"a": 2}))
    with pytest.raises(api.UsageError, match=needle):
        api.export(src, tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()
    assert api.export(src, tmp_path / "ok", workers=np.int64(1)).written == 2  # numpy's integers are integers


def test_a_path_whose_name_is_too_long_is_exit_2_naming_it(tmp_path: Path) -> None:
    """A SOURCE, --labels or --data-dir with a name past 255 bytes was a traceback (preview, inspect,
    compare, tfds) or 'cannot write in OUT' (export, exit 1, leaving an empty OUT behind)."""
    src = make_class_folder(tmp_path / "src", {"a": 1, "b": 1})
    long = str(tmp_path / ("x" * 300))
    runner = CliRunner()
    cases = [(["export", long, str(tmp_path / "out")], f"SOURCE {long}"),
             (["export", str(src / "a" / ("y" * 300)), str(tmp_path / "out")], "SOURCE "),
             (["export", str(src), str(tmp_path / "out"), "--labels", long + ".csv"], f"--labels {long}.csv"),
             (["preview", long, "-o", str(tmp_path / "g.png")], f"SOURCE {long}"),
             (["inspect", long], long),
             (["export", "tfds:mnist", str(tmp_path / "out"), "--data-dir", long], long)]
    for args, needle in cases:
        res = runner.invoke(main, args)
        assert res.exit_code == 2, (args, res.output)
        assert needle in res.output and "the name is too long for the file system" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_an_os_error_inside_the_run_leaves_no_out_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """'cannot write in OUT; nothing was finalized' (exit 1) also removes the OUT folder this run created."""
    import errno

    from augexport import api
    from augexport.errors import ExportFailed
    from augexport.run import ExportRun

    def full_disk(self: ExportRun) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ExportRun, "_locked", full_disk)
    src = make_class_folder(tmp_path / "src", {"a": 1})
    with pytest.raises(ExportFailed, match="No space left on device; nothing was finalized"):
        api.export(str(src), tmp_path / "new" / "out", workers=1)
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(ExportFailed):
        api.export(str(src), tmp_path / "kept", workers=1)
    assert (tmp_path / "kept").is_dir()  # an OUT that was there stays
    from augexport.outdir import OutDir

    def dead_mount(self: OutDir) -> list[str]:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(OutDir, "entries", dead_mount)  # the clean-up cannot look: the run's error still shows
    with pytest.raises(ExportFailed, match="No space left on device; nothing was finalized"):
        api.export(str(src), tmp_path / "gone" / "out", workers=1)


def test_an_empty_source_is_named_not_taken_for_the_current_folder(tmp_path: Path) -> None:
    """`export "" OUT` said 'OUT is inside SOURCE ;'; `preview ""` previewed the current folder."""
    for args in (["export", "", str(tmp_path / "out")], ["preview", " ", "-o", str(tmp_path / "g.png")],
                 ["tta", "", str(tmp_path / "out"), "--variants", "d4"]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 2 and "is empty; accepted: a folder of class folders" in res.output, (args, res.output)
    assert not list(tmp_path.iterdir())
