"""End-to-end export: round-trips through tf.data and TFDS, determinism, OUT handling, inspect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from augexport import api, codec
from augexport.cli import main
from tests.conftest import make_class_folder
from tests.helpers import manifest, read_records, shard_hashes

PIPELINE = {"copies": 2, "stages": [{"cutout": {"size": 0.3, "p": 0.7}}], "mix": {"method": "cutmix", "p": 0.5}}


def run_cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def write_config(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(spec))
    return path


def test_originals_only_png_roundtrip_through_tf_data_and_tfds(small_folder: Path, tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    tfds = pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "out"
    res = run_cli("export", small_folder, out, "--encoding", "png", "--workers", "1", "--quiet")
    assert res.exit_code == 0, res.output
    assert "10 images in, 10 records out, 0 skipped" in res.output
    m = manifest(out)
    assert m["class_names"] == ["a", "b", "c"] and m["splits"]["train"]["counts"]["written"] == 10
    # every record, read by tf.data with TF's own parser, equals the decoded source pixels
    files = sorted(str(p) for p in out.glob("src-train.tfrecord-*"))
    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
            "source_id": tf.io.FixedLenFeature([], tf.string), "soft_label": tf.io.FixedLenFeature([3], tf.float32),
            "copy": tf.io.FixedLenFeature([], tf.int64), "variant": tf.io.FixedLenFeature([], tf.string),
            "mix_source_id": tf.io.FixedLenFeature([], tf.string), "mix_lambda": tf.io.FixedLenFeature([], tf.float32),
            "params": tf.io.FixedLenFeature([], tf.string)}
    seen = set()
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec)
        sid = ex["source_id"].numpy().decode()
        seen.add(sid)
        expected = codec.decode((small_folder / sid).read_bytes())
        np.testing.assert_array_equal(tf.io.decode_png(ex["image"]).numpy(), expected)
        assert ex["label"].numpy() == ["a", "b", "c"].index(sid.split("/")[0])
        assert ex["soft_label"].numpy().sum() == pytest.approx(1.0)
        assert ex["copy"].numpy() == 0 and ex["variant"].numpy() == b"original"
        assert ex["mix_lambda"].numpy() == 1.0 and ex["mix_source_id"].numpy() == b""
        assert json.loads(ex["params"].numpy()) == []
    assert len(seen) == 10
    # and TFDS loads every feature from the folder
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["label"].names == ["a", "b", "c"]
    rows = list(builder.as_dataset(split="train").as_numpy_iterator())
    assert len(rows) == 10
    pairs = list(builder.as_dataset(split="train", as_supervised=True).as_numpy_iterator())
    assert len(pairs) == 10 and all(img.ndim == 3 and 0 <= label < 3 for img, label in pairs)
    for row in rows:
        expected = codec.decode((small_folder / row["source_id"].decode()).read_bytes())
        np.testing.assert_array_equal(row["image"], expected)


def test_augmented_records_and_tfds_load(sample_data: Path, tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "out"
    cfg = write_config(tmp_path, {**PIPELINE, "image_size": [40, 56]})
    res = run_cli("export", sample_data, out, "--config", cfg, "--workers", "1", "--num-shards", "3", "--quiet")
    assert res.exit_code == 0, res.output
    rows = list(tfds.builder_from_directory(str(out)).as_dataset(split="train").as_numpy_iterator())
    assert len(rows) == 30 * 3
    assert len(list(out.glob("sample_data-train.tfrecord-*-of-00003"))) == 3
    copies = sorted({int(r["copy"]) for r in rows})
    assert copies == [0, 1, 2]
    for r in rows:
        assert r["image"].shape == (40, 56, 3)
        assert r["soft_label"].sum() == pytest.approx(1.0, abs=1e-6)
        params = json.loads(r["params"])
        if r["copy"] == 0:
            assert params == [] and r["variant"] == b"original"
        else:
            assert params[0]["stage"] == "cutout" and r["variant"] == b"augmented"
        if r["mix_source_id"]:
            assert params[-1]["stage"] == "mix" and params[-1]["lambda"] == pytest.approx(r["mix_lambda"])
            assert r["mix_source_id"] != r["source_id"]
    assert any(r["mix_source_id"] for r in rows)


@pytest.mark.parametrize("workers,batch_size", [(2, 3), (1, 1)])
def test_shards_identical_across_workers_and_batch_sizes(sample_data: Path, tmp_path: Path, workers: int, batch_size: int) -> None:
    over = {**PIPELINE, "image_size": [32, 32]}
    ref = tmp_path / "ref"
    api.export(str(sample_data), ref, overrides=over, workers=1, batch_size=16, num_shards=2)
    out = tmp_path / "other"
    api.export(str(sample_data), out, overrides=over, workers=workers, batch_size=batch_size, num_shards=2)
    assert shard_hashes(ref) == shard_hashes(out)
    assert len(shard_hashes(ref)) == 2


def test_shuffle_is_seeded_and_no_shuffle_keeps_source_order(small_folder: Path, tmp_path: Path) -> None:
    api.export(str(small_folder), tmp_path / "s0", workers=1)
    api.export(str(small_folder), tmp_path / "s1", workers=1, overrides={"seed": 1})
    api.export(str(small_folder), tmp_path / "ns", workers=1, shuffle=False)
    order = lambda out: [r["source_id"][0].decode() for r in read_records(out)]  # noqa: E731
    assert order(tmp_path / "ns") == sorted(order(tmp_path / "ns"))
    assert order(tmp_path / "s0") != order(tmp_path / "ns")
    assert order(tmp_path / "s0") != order(tmp_path / "s1")
    assert sorted(order(tmp_path / "s0")) == order(tmp_path / "ns")


def test_label_smoothing_soft_labels(small_folder: Path, tmp_path: Path) -> None:
    api.export(str(small_folder), tmp_path / "o", workers=1, overrides={"label_smoothing": 0.3})
    for r in read_records(tmp_path / "o"):
        y = r["soft_label"]
        assert y.sum() == pytest.approx(1.0, abs=1e-6)
        assert y[r["label"][0]] == pytest.approx(0.7 + 0.1)
        assert sorted(y)[0] == pytest.approx(0.1)


def test_second_split_is_added_beside_the_first(small_folder: Path, tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    out = tmp_path / "out"
    assert run_cli("export", small_folder, out, "--workers", "1", "--quiet").exit_code == 0
    res = run_cli("export", small_folder, out, "--split", "validation", "--workers", "1", "--quiet")
    assert res.exit_code == 0, res.output
    builder = tfds.builder_from_directory(str(out))
    assert set(builder.info.splits) == {"train", "validation"}
    assert len(list(builder.as_dataset(split="validation"))) == 10
    # the same split again needs --overwrite
    res = run_cli("export", small_folder, out, "--split", "validation", "--workers", "1")
    assert res.exit_code == 2 and "already has split 'validation'" in res.output
    assert run_cli("export", small_folder, out, "--split", "validation", "--overwrite", "--workers", "1").exit_code == 0


def test_images_format_and_gzip(small_folder: Path, tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    out = tmp_path / "out"
    res = run_cli("export", small_folder, out, "--format", "both", "--compression", "gzip", "--copies", "1",
                  "--no-include-original", "--workers", "1", "--quiet")
    # copies 1 with no stages is allowed: the "augmented" copy equals the original
    assert res.exit_code == 0, res.output
    files = sorted(out.glob("images/train/*/*.jpg"))
    assert len(files) == 10 and all(p.name.endswith("__c1.jpg") for p in files)
    m = manifest(out)
    assert m["splits"]["train"]["tfds_loadable"] is False
    assert not (out / "dataset_info.json").exists()
    shards = [str(p) for p in out.glob("src-train.tfrecord-*")]
    assert sum(1 for _ in tf.data.TFRecordDataset(shards, compression_type="GZIP")) == 10


def test_labels_csv_flat_folder_and_channels_1(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "tmp", {"x": 4})
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["filename,label"]
    for i, p in enumerate(sorted((src / "x").iterdir())):
        p.rename(flat / p.name)
        rows.append(f"{p.name},{['dog', 'cat'][i % 2]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    res = run_cli("export", flat, out, "--labels", tmp_path / "labels.csv", "--channels", "1", "--encoding", "png",
                  "--workers", "1", "--quiet")
    assert res.exit_code == 0, res.output
    m = manifest(out)
    assert m["class_names"] == ["cat", "dog"]
    recs = read_records(out)
    assert {r["source_id"][0].decode(): r["label"][0] for r in recs} == {
        "img_000.png": 1, "img_001.png": 0, "img_002.png": 1, "img_003.png": 0}
    assert all(codec.decode(r["image"][0], channels=1).shape[2] == 1 for r in recs)
    assert json.loads((out / "features.json").read_text())["featuresDict"]["features"]["image"]["image"]["shape"]["dimensions"][2] == "1"


def test_out_refusals_and_usage_errors(small_folder: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    res = run_cli("export", small_folder, foreign, "--workers", "1")
    assert res.exit_code == 2 and "not empty" in res.output and "--overwrite" in res.output
    assert (foreign / "keep.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1
    res = run_cli("export", tmp_path / "missing", tmp_path / "o")
    assert res.exit_code == 2 and "does not exist" in res.output
    res = run_cli("export", small_folder, small_folder / "a" / "out")
    assert res.exit_code == 2 and "inside SOURCE" in res.output
    empty = tmp_path / "empty"
    (empty / "cls").mkdir(parents=True)
    res = run_cli("export", empty, tmp_path / "o2")
    assert res.exit_code == 2 and "no image files" in res.output
    res = run_cli("export", small_folder, tmp_path / "o3", "--format", "tiff")
    assert res.exit_code == 2 and "accepted: tfrecord, images, both" in res.output
    res = run_cli("export", small_folder, tmp_path / "o4", "--image-size", "big")
    assert res.exit_code == 2 and "--image-size: 'big'" in res.output
    # other class names into the same OUT: refused, naming both
    other = make_class_folder(tmp_path / "other", {"zz": 2})
    run_cli("export", small_folder, tmp_path / "o5", "--workers", "1", "--name", "ds")
    res = run_cli("export", other, tmp_path / "o5", "--workers", "1", "--split", "test", "--name", "ds")
    assert res.exit_code == 2 and "['zz']" in res.output


def test_inspect_and_verify_catches_flipped_byte(small_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.export(str(small_folder), out, workers=1, overrides={"copies": 1, "stages": [{"cutout": {}}]})
    res = run_cli("inspect", out, "--verify")
    assert res.exit_code == 0, res.output
    assert "20 records" in res.output and "verify: every shard matches" in res.output
    report = api.inspect(out)
    assert report["splits"]["train"]["label_histogram"] == {"a": 8, "b": 6, "c": 6}
    shard = next(out.glob("src-train.tfrecord-*"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x40
    shard.write_bytes(bytes(data))
    res = run_cli("inspect", out, "--verify")
    assert res.exit_code == 1 and "sha256" in res.output
    assert run_cli("inspect", tmp_path).exit_code == 2


def test_inspect_names_a_shard_file_the_manifest_does_not_list(small_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.export(str(small_folder), out, workers=1)
    shard = next(out.glob("src-train.tfrecord-*"))
    (out / "src-train.tfrecord-00001-of-00002").write_bytes(shard.read_bytes())  # a glob reader would read it
    for args in ((), ("--verify",)):
        res = run_cli("inspect", out, *args)
        assert res.exit_code == 1 and "src-train.tfrecord-00001-of-00002" in res.output, res.output
        assert "does not list it" in res.output


@pytest.mark.parametrize("name,edit", [("dataset_info.json", lambda t: t.replace('"20"', '"19"')),
                                       ("features.json", lambda t: t.replace('"soft_label"', '"soft"')),
                                       ("label.labels.txt", lambda t: t + "extra\n"),
                                       ("dataset_info.json", None)])
def test_verify_checks_the_tfds_metadata_against_the_manifest(small_folder: Path, tmp_path: Path, name: str,
                                                               edit: Any) -> None:
    out = tmp_path / "out"
    api.export(str(small_folder), out, workers=1, overrides={"copies": 1, "stages": [{"cutout": {}}]})
    assert run_cli("inspect", out, "--verify").exit_code == 0
    path = out / name
    if edit is None:
        path.unlink()
    else:
        text = path.read_text()
        assert edit(text) != text
        path.write_text(edit(text))
    res = run_cli("inspect", out, "--verify")
    assert res.exit_code == 1 and f"{name}: {'missing' if edit is None else 'differs'}" in res.output, res.output


def test_tfds_metadata_matches_tfds_own_writer(small_folder: Path, tmp_path: Path) -> None:
    """Our hand-written features.json equals what tfds.features.FeaturesDict serializes."""
    tfds = pytest.importorskip("tensorflow_datasets")
    tf = pytest.importorskip("tensorflow")
    out = tmp_path / "out"
    api.export(str(small_folder), out, workers=1)
    ours = json.loads((out / "features.json").read_text())
    theirs = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
        "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
        "soft_label": tfds.features.Tensor(shape=(3,), dtype=tf.float32),
        "source_id": tfds.features.Text(), "copy": tfds.features.Scalar(dtype=tf.int64),
        "variant": tfds.features.Text(), "mix_source_id": tfds.features.Text(),
        "mix_lambda": tfds.features.Scalar(dtype=tf.float32), "params": tfds.features.Text(),
    })
    from google.protobuf import json_format

    assert ours == json_format.MessageToDict(theirs.to_proto())


def test_help_does_not_import_tensorflow() -> None:
    code = ("import sys; from click.testing import CliRunner; from augexport.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(main, ['export', '--help']); assert '--rotation-range' in r.output; "
            "assert '--horizontal-flip' in r.output and '--max-file-bytes' in r.output; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert res.stdout.strip() == "False False", res.stderr


def test_overwrite_that_fails_keeps_the_old_split(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 3, "b": 2})
    out = tmp_path / "out"
    assert CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--format", "both"]).exit_code == 0
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    (src / "a" / "broken.png").write_bytes(b"not a png")
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--format", "both",
                                    "--overwrite", "--on-error", "fail"])
    assert res.exit_code == 1
    after = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert after == before
    assert CliRunner().invoke(main, ["inspect", str(out), "--verify"]).exit_code == 0


def test_tfds_metadata_follows_the_splits_an_overwrite_leaves(small_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.export(str(small_folder), out, workers=1)
    api.export(str(small_folder), out, workers=1, split="test")
    info = json.loads((out / "dataset_info.json").read_text())
    assert sorted(s["name"] for s in info["splits"]) == ["test", "train"]
    api.export(str(small_folder), out, workers=1, split="test", compression="gzip", overwrite=True)
    info = json.loads((out / "dataset_info.json").read_text())
    assert [s["name"] for s in info["splits"]] == ["train"]  # gzip shards are not TFDS-loadable
    api.export(str(small_folder), out, workers=1, compression="gzip", overwrite=True)
    assert not (out / "dataset_info.json").exists() and not (out / "features.json").exists()
    assert run_cli("inspect", out, "--verify").exit_code == 0


def test_inspect_names_an_interrupted_run_beside_a_finished_manifest(small_folder: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """An --overwrite stopped after it retired the old split leaves a manifest and a journal."""
    from augexport import resume

    out = tmp_path / "out"
    api.export(str(small_folder), out, workers=1)
    api.export(str(small_folder), out, workers=1, split="test")

    def stop(*_a: Any, **_k: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(resume.Journal, "record", stop)
    with pytest.raises(KeyboardInterrupt):
        api.export(str(small_folder), out, workers=1, overwrite=True, shard_size="4KiB",
                   overrides={"copies": 1, "stages": [{"cutout": {}}]})
    res = run_cli("inspect", out, "--verify")
    assert res.exit_code == 1 and "was interrupted" in res.output and "--resume" in res.output, res.output
