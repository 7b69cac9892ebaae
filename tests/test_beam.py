"""`--runner beam`: DirectRunner (2 worker processes) writes the same bytes as the local runner."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from augexport import api
from augexport.cli import main
from augexport.errors import UsageError
from tests.helpers import manifest, shard_hashes

# a keras stage, cutout and CutMix; image_size 32 keeps the DirectRunner runs short
PIPELINE = {"copies": 2, "image_size": 32,
            "stages": [{"keras": {"rotation_range": 20, "width_shift_range": 0.1, "height_shift_range": 0.1,
                                  "shear_range": 10, "zoom_range": 0.1, "horizontal_flip": True}},
                       {"cutout": {"size": 0.3, "p": 0.7}}],
            "mix": {"method": "cutmix", "p": 0.5}}


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(PIPELINE))
    return path


def _local(src: Path, out: Path, cfg: Path, *flags: str) -> None:
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--workers", "1", "--quiet",
                                    *flags], catch_exceptions=False)
    assert res.exit_code == 0, res.output


def _beam(src: Path, out: Path, cfg: Path, *flags: str):
    return CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--quiet", "--runner", "beam",
                                     "--beam-option", "direct_running_mode=multi_processing",
                                     "--beam-option", "direct_num_workers=2", *flags], catch_exceptions=False)


def _same_split(local: Path, beam_out: Path) -> dict:
    expected = shard_hashes(local)
    assert shard_hashes(beam_out) == expected
    a, b = manifest(local)["splits"]["train"], manifest(beam_out)["splits"]["train"]
    for key in ("shards", "counts", "label_counts", "identity", "tfds_loadable"):
        assert a[key] == b[key], key
    # PIL's "cannot identify image file <_io.BytesIO object at 0x...>" differs per process: mask addresses
    def errors(out: Path) -> str:
        return re.sub(r"0x[0-9a-f]+", "0x?", (out / "errors-train.jsonl").read_text())

    assert errors(local) == errors(beam_out)
    for meta in ("dataset_info.json", "features.json", "label.labels.txt"):
        assert (local / meta).exists() == (beam_out / meta).exists()
        if (local / meta).exists():
            assert (local / meta).read_bytes() == (beam_out / meta).read_bytes(), meta
    assert not list(beam_out.glob(".tmp-*"))
    return b


def test_num_shards_byte_identical_and_tfds_loads(sample_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    tfds = pytest.importorskip("tensorflow_datasets")
    cfg = _config(tmp_path)
    _local(sample_data, tmp_path / "local", cfg, "--num-shards", "3")
    res = _beam(sample_data, tmp_path / "beam", cfg, "--num-shards", "3")
    assert res.exit_code == 0, res.output
    entry = _same_split(tmp_path / "local", tmp_path / "beam")
    assert len(entry["shards"]) == 3 and entry["counts"]["written"] == 90
    assert 0 < entry["counts"]["mixed"] < 60 and entry["timings"]["runner"] == "beam"
    rows = list(tfds.builder_from_directory(str(tmp_path / "beam")).as_dataset(split="train").as_numpy_iterator())
    assert len(rows) == 90 and any(r["mix_lambda"] < 1.0 for r in rows)


def test_shard_size_rollover_and_errors_match_local(sample_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    src = tmp_path / "src"
    shutil.copytree(sample_data, src)
    (src / "cat" / "zz_broken.jpg").write_bytes(b"not a jpeg")  # skipped, and listed in errors-train.jsonl
    cfg = _config(tmp_path)
    _local(src, tmp_path / "local", cfg, "--shard-size", "40KB")
    res = _beam(src, tmp_path / "beam", cfg, "--shard-size", "40KB")
    assert res.exit_code == 0, res.output
    entry = _same_split(tmp_path / "local", tmp_path / "beam")
    assert len(entry["shards"]) > 3 and entry["counts"]["skipped"] == 1


def test_empty_shards_and_gzip_match_local(sample_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    cfg = _config(tmp_path)
    flags = ("--num-shards", "100", "--compression", "gzip", "--no-shuffle")  # 90 records: some shards empty
    _local(sample_data, tmp_path / "local", cfg, *flags)
    res = _beam(sample_data, tmp_path / "beam", cfg, *flags)
    assert res.exit_code == 0, res.output
    entry = _same_split(tmp_path / "local", tmp_path / "beam")
    assert len(entry["shards"]) == 100 and any(s["records"] == 0 for s in entry["shards"])


def test_size_boundaries_replay_shard_writer(tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    from augexport.beam import Layout, size_boundaries
    from augexport.naming import SplitNames
    from augexport.outdir import OutDir
    from augexport.sinks.tfrecord import ShardWriter

    rng = np.random.default_rng(7)  # test-side randomness only
    for trial in range(20):
        n = int(rng.integers(1, 60))
        sizes = rng.integers(1, 50, size=n).tolist()
        planned = sorted(rng.choice(np.arange(n * 2), size=n, replace=False).tolist())  # gaps = skipped inputs
        limit = int(rng.integers(1, 200))
        out = tmp_path / f"t{trial}"
        out.mkdir()
        writer = ShardWriter(OutDir(out), SplitNames("d", "train"), planned_total=n * 2, shard_bytes=limit)
        for p, size in zip(planned, sizes, strict=True):
            writer.write(p, b"x" * size)
        lengths = [s.records for s in writer.finalize()]
        starts = size_boundaries(list(zip(planned, sizes, strict=True)), limit)
        layout = Layout(str(out), SplitNames("d", "train"), n * 2, None, limit, "none")
        got = [0] * layout.shard_count(starts)
        for p in planned:
            got[layout.shard_of(p, starts)] += 1
        assert got == lengths


def test_beam_options_become_pipeline_flags() -> None:
    pytest.importorskip("apache_beam")
    from augexport.beam import make_options, pipeline_flags

    flags = pipeline_flags(["direct_num_workers=4", "save_main_session"])
    assert "--runner=DirectRunner" in flags and "--direct_num_workers=4" in flags
    assert "--direct_num_workers=2" not in flags and "--save_main_session" in flags
    dataflow = pipeline_flags(["runner=DataflowRunner", "project=p", "region=europe-west1"])
    assert not any(f.startswith("--direct_") for f in dataflow) and "--runner=DataflowRunner" in dataflow
    opts = make_options(flags).get_all_options()
    assert opts["direct_num_workers"] == 4 and opts["save_main_session"] is True
    # flag names that differ from their dest (extra_package -> extra_packages) and repeated flags are fine
    staged = make_options(pipeline_flags(["extra_package=a.tar.gz", "experiments=x", "experiments=y"]))
    assert staged.get_all_options()["extra_packages"] == ["a.tar.gz"]
    assert staged.get_all_options()["experiments"] == ["x", "y"]
    with pytest.raises(UsageError, match="direct_num_workers"):
        make_options(pipeline_flags(["direct_num_workers=many"]))


def test_bad_beam_option_exits_2_before_touching_out(small_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    out = tmp_path / "out"
    for option in ("no_such_option=1", "=x"):
        res = CliRunner().invoke(main, ["export", str(small_folder), str(out), "--runner", "beam", "--quiet",
                                        "--beam-option", option])
        assert res.exit_code == 2, res.output
        assert "--beam-option" in res.output
        assert not out.exists()
    res = CliRunner().invoke(main, ["export", str(small_folder), str(out), "--runner", "beam", "--resume"])
    assert res.exit_code == 2 and "--resume is not available with --runner beam" in res.output
    assert not out.exists()


def test_without_apache_beam_exits_2_with_install_hint(small_folder: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # as if not installed
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(small_folder), str(out), "--runner", "beam", "--quiet"])
    assert res.exit_code == 2
    assert "pip install 'augexport[beam]'" in res.output
    assert not out.exists()
    with pytest.raises(api.UsageError):
        api.export(str(small_folder), out, runner="beam")


def test_on_error_fail_finalizes_nothing(small_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    (small_folder / "a" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(small_folder), str(out), "--runner", "beam", "--quiet",
                                    "--on-error", "fail"])
    assert res.exit_code == 1 and "a/broken.png" in res.output and "nothing was finalized" in res.output
    assert not out.exists()  # the run created OUT, wrote nothing final, and removed it again
