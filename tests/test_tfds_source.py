"""TFDS splits as a source, offline: registered datasets through `tfds.testing.mock_data`, and
really prepared datasets on disk (augexport outputs, read back by TFDS's own reader)."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

from augexport import api, codec
from augexport.cli import main
from augexport.errors import UsageError
from augexport.sources.tfds import output_split_name, parse_spec
from tests.conftest import make_class_folder
from tests.helpers import manifest, read_records, shard_hashes

tfds = pytest.importorskip("tensorflow_datasets")
ROOT = Path(__file__).resolve().parent.parent
ORIGINALS = {"copies": 0, "include_original": True}


def run_cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PARENT/photos: an augexport OUT (PNG, so lossless) with a train (10) and a test (4) split."""
    base = tmp_path_factory.mktemp("prepared")
    train = make_class_folder(base / "train_src", {"a": 4, "b": 3, "c": 3})
    test = make_class_folder(base / "test_src", {"a": 2, "b": 1, "c": 1}, size=(20, 28))
    parent = base / "parent"
    for src, split in ((train, "train"), (test, "test")):
        api.export(str(src), parent / "photos", name="photos", split=split, encoding="png", workers=1,
                   overrides=ORIGINALS)
    return parent


@pytest.fixture
def own_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Spill files go here, so a test can see that they are cleaned up."""
    spill = tmp_path / "spill"
    spill.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill))
    return spill


def test_spec_and_split_names() -> None:
    assert parse_spec("cifar10") == ("cifar10", None, None)
    assert parse_spec("imagenet2012/subset:5.1.0") == ("imagenet2012", "subset", "5.1.0")
    assert parse_spec("mnist:3.*.*") == ("mnist", None, "3.*.*")
    with pytest.raises(UsageError, match="accepted: tfds:NAME"):
        parse_spec("bad name")
    assert output_split_name("train") == "train"
    assert output_split_name("train[:10%]") == "train"
    assert output_split_name("train[10:20]+test[:50%]") == "train_test"
    assert output_split_name(" train + validation ") == "train_validation"


def test_reexport_of_an_augexport_output_keeps_bytes_classes_and_honours_slices(prepared: Path, tmp_path: Path,
                                                                                 own_tmpdir: Path) -> None:
    source_rows = read_records(prepared / "photos", "train")
    by_tfds_id = {f"photos-train.tfrecord-00000-of-00001__{i}": r for i, r in enumerate(source_rows)}
    out = tmp_path / "out"
    res = run_cli("export", "tfds:photos", out, "--data-dir", prepared, "--split", "train[:40%]", "--encoding", "png",
                  "--copies", "0", "--include-original", "--workers", "1", "--quiet")
    assert res.exit_code == 0, res.output
    m = manifest(out)
    assert m["class_names"] == ["a", "b", "c"] and m["name"] == "photos"
    entry = m["splits"]["train"]
    assert entry["counts"]["source"] == 4 and entry["source"]["split"] == "train[:40%]"
    rows = read_records(out)
    assert len(rows) == 4
    for row in rows:
        sid = row["source_id"][0].decode()
        original = by_tfds_id[sid]  # source_id is the TFDS example id; [:40%] = the first 4 examples
        assert int(sid.rsplit("__", 1)[1]) < 4
        assert row["label"] == original["label"]
        # SkipDecoding hands the original PNG bytes to the workers: pixels are unchanged
        np.testing.assert_array_equal(codec.decode(row["image"][0]), codec.decode(original["image"][0]))
    assert sum(entry["label_counts"]) == 4
    assert entry["label_counts"] == [sum(r["label"][0] == k for r in rows) for k in range(3)]
    # the output's TFDS metadata carries the class names and the count
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["label"].names == ["a", "b", "c"]
    assert builder.info.splits["train"].num_examples == 4
    assert list(own_tmpdir.iterdir()) == []  # the spill directory is gone once the export returns


def test_split_expressions_on_a_prepared_dataset(prepared: Path, tmp_path: Path) -> None:
    res = api.export("tfds:photos", tmp_path / "o1", data_dir=str(prepared), split="train[2:5]+test[:50%]",
                     encoding="png", workers=1, overrides=ORIGINALS)
    assert res.split == "train_test" and res.sources == 3 + 2
    ids = sorted(r["source_id"][0].decode() for r in read_records(tmp_path / "o1", "train_test"))
    assert ids == [f"photos-test.tfrecord-00000-of-00001__{i}" for i in (0, 1)] + \
                  [f"photos-train.tfrecord-00000-of-00001__{i}" for i in (2, 3, 4)]
    res = api.export("tfds:photos", tmp_path / "o2", data_dir=str(prepared), split="test", workers=1, overrides=ORIGINALS)
    assert res.split == "test" and res.sources == 4


@pytest.mark.parametrize("split", ["train[3:1]", "train[50%:10%]", "train[:2]+test[3:1]"])
def test_a_slice_that_ends_before_it_starts_is_a_usage_error(prepared: Path, tmp_path: Path, split: str) -> None:
    for command in (["export"], ["tta", "--variants", "hflip"]):
        res = run_cli(*command[:1], "tfds:photos", tmp_path / "out", *command[1:], "--data-dir", prepared,
                      "--split", split, "--workers", "1")
        assert res.exit_code == 2 and "ends before it starts" in res.output and "Traceback" not in res.output, \
            res.output
        assert not (tmp_path / "out").exists()


def test_determinism_across_workers_with_mixing(prepared: Path, tmp_path: Path) -> None:
    over = {"copies": 2, "stages": [{"cutout": {"size": 0.3, "p": 0.7}}], "mix": {"method": "cutmix", "p": 0.5}}
    for workers, batch in ((1, 16), (2, 3)):
        api.export("tfds:photos", tmp_path / f"w{workers}", data_dir=str(prepared), split="train", workers=workers,
                   batch_size=batch, overrides=over, num_shards=2)
    assert shard_hashes(tmp_path / "w1") == shard_hashes(tmp_path / "w2")
    m = manifest(tmp_path / "w2")["splits"]["train"]
    assert m["counts"]["written"] == 30 and m["counts"]["mixed"] > 0


def test_sample_tfds_dataset_in_standard_layout(tmp_path: Path) -> None:
    res = run_cli("export", "tfds:sample_photos", tmp_path / "out", "--data-dir", ROOT / "sample_tfds",
                  "--split", "train[:50%]", "--copies", "1", "--workers", "1", "--quiet")
    assert res.exit_code == 0, res.output
    m = manifest(tmp_path / "out")
    assert m["class_names"] == ["cat", "cup", "space"] and m["splits"]["train"]["counts"]["source"] == 15


def _tree(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["sample_photos/1.0.0", "sample_photos/new", "flat"])
def test_an_out_inside_the_source_dataset_folder_is_refused_and_nothing_changes(tmp_path: Path, where: str) -> None:
    """`--overwrite` into the dataset being read replaced its shard with the augmented copies."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(ROOT / "sample_tfds", data)
    out = data / where
    if where == "flat":  # an exported dataset given as --data-dir itself
        data = data / "sample_photos" / "1.0.0"
        out = data
    before = _tree(tmp_path / "data")
    res = run_cli("export", "tfds:sample_photos", out, "--data-dir", data, "--overwrite", "--copies", "1",
                  "--workers", "1", "--quiet")
    assert res.exit_code == 2 and "where SOURCE tfds:sample_photos is read from" in res.output, res.output
    assert _tree(tmp_path / "data") == before
    res = run_cli("export", "tfds:sample_photos", tmp_path / "elsewhere", "--data-dir", data, "--copies", "0",
                  "--workers", "1", "--quiet")
    assert res.exit_code == 0, res.output


def test_the_spill_folder_is_gone_when_export_returns(tmp_path: Path) -> None:
    """Not left to the garbage collector: the listing sits in reference cycles, so with gc off (or
    not yet run) a finalizer on it would leave .tmp-tfds-spool-* in OUT after export returned."""
    import gc

    gc.disable()
    try:
        api.export("tfds:sample_photos", tmp_path / "out", data_dir=str(ROOT / "sample_tfds"), split="train[:20%]",
                   workers=1, overrides=ORIGINALS)
        assert not list((tmp_path / "out").glob(".tmp-tfds-spool-*"))
    finally:
        gc.enable()


@pytest.mark.parametrize(("dataset", "classes", "first_class"), [
    # cifar10's names come from its downloaded archive, so unprepared (mocked) it has '0'..'9'
    ("cifar10", 10, "0"), ("fashion_mnist", 10, "T-shirt/top"), ("stanford_dogs", 120, None)])
def test_registered_datasets_through_mock_data(dataset: str, classes: int, first_class: str | None,
                                               tmp_path: Path) -> None:
    # mock_data fakes the prepared files (not `is_prepared`, which tfds.load never asks): pretend both
    with tfds.testing.mock_data(num_examples=6), \
            mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True):
        res = api.export(f"tfds:{dataset}", tmp_path / "out", split="train[:10%]", workers=1, overrides=ORIGINALS)
    m = manifest(tmp_path / "out")
    assert res.split == "train" and res.sources == 6 and m["name"] == dataset
    assert len(m["class_names"]) == classes and (first_class is None or m["class_names"][0] == first_class)
    assert sum(m["splits"]["train"]["label_counts"]) == 6
    rows = read_records(tmp_path / "out")
    assert {r["source_id"][0].decode().split("__")[0] for r in rows} == {f"{dataset}-train[:10%].tfrecord-00000-of-00001"}
    assert all(codec.decode(r["image"][0], channels=3).shape[2] == 3 for r in rows)


def test_grayscale_dataset_keeps_one_channel_or_expands_to_rgb(tmp_path: Path) -> None:
    with tfds.testing.mock_data(num_examples=3), \
            mock.patch.object(tfds.core.DatasetBuilder, "is_prepared", return_value=True):
        api.export("tfds:fashion_mnist", tmp_path / "rgb", split="test", encoding="png", workers=1, overrides=ORIGINALS)
        api.export("tfds:fashion_mnist", tmp_path / "grey", split="test", encoding="png", channels=1, workers=1,
                   overrides=ORIGINALS)
    import io

    from PIL import Image

    rgb = [Image.open(io.BytesIO(r["image"][0])) for r in read_records(tmp_path / "rgb", "test")]
    grey = [Image.open(io.BytesIO(r["image"][0])) for r in read_records(tmp_path / "grey", "test")]
    assert {im.mode for im in rgb} == {"RGB"} and {im.mode for im in grey} == {"L"}
    assert {im.size for im in grey} == {(28, 28)}
    assert manifest(tmp_path / "grey")["channels"] == 1


def test_not_prepared_fails_fast_with_where_and_how(tmp_path: Path) -> None:
    empty = tmp_path / "tfds_data"
    empty.mkdir()
    t0 = time.monotonic()
    res = run_cli("export", "tfds:mnist", tmp_path / "out", "--data-dir", empty, "--quiet")
    assert res.exit_code == 2
    assert "not prepared" in res.output and str(empty / "mnist") in res.output and "tfds build mnist" in res.output
    assert time.monotonic() - t0 < 60  # generous: only guards against a DNS/download hang
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["tfds:no_such_dataset_xyz", "--data-dir", "{empty}"], "neither a registered TFDS dataset"),
    (["tfds:mnist", "--data-dir", "{missing}"], "does not exist"),
    (["tfds:photos", "--data-dir", "{prepared}", "--split", "validation"], "--split 'validation' is not a split of photos"),
    (["tfds:photos", "--data-dir", "{prepared}", "--label-key", "copy"], "--label-key 'copy': feature is Scalar"),
    (["tfds:cifar10:9.9.9", "--data-dir", "{empty}"], "cannot be loaded at version 9.9.9"),
    (["tfds:sample_photos:9.9.9", "--data-dir", "{sample}"], "version 9.9.9 is not in --data-dir"),
])
def test_usage_errors_exit_2(args: list[str], message: str, prepared: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    paths = {"empty": tmp_path / "empty", "missing": tmp_path / "missing", "prepared": prepared,
             "sample": Path(__file__).resolve().parent.parent / "sample_tfds"}  # sample_photos/1.0.0/
    res = run_cli("export", args[0], tmp_path / "out", *[a.format(**paths) for a in args[1:]], "--quiet")
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_tf_is_not_imported_for_folder_sources(small_folder: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; from augexport import api; "
            f"api.export({str(small_folder)!r}, {str(tmp_path / 'out')!r}, workers=1); "
            "print('tensorflow' in sys.modules, 'tensorflow_datasets' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False False"
