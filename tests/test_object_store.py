"""SOURCE, OUT, --config and --labels in S3 (moto's S3 server on loopback, see conftest `s3`): the
same bytes as local paths with the local runner and with Beam, kill -9 + --resume, inspect
--verify, and every way a URL can be unusable (exit 2, nothing written).

TFDS cannot read s3:// here (tf.io.gfile has no S3 file system in TensorFlow 2.6+), so the TFDS
check loads the S3 output copied back to local disk."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from augexport import api
from augexport.cli import main
from tests.conftest import make_class_folder
from tests.helpers import shard_hashes

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = {"copies": 2, "stages": [{"cutout": {"size": 0.3, "p": 0.7}}], "mix": {"method": "mixup", "p": 0.5}}


def _export(*args: str) -> Any:
    return CliRunner().invoke(main, ["export", *args, "--workers", "1", "--quiet"], catch_exceptions=False)


def _s3_hashes(fs: Any, prefix: str, pattern: str = ".tfrecord-") -> list[tuple[str, str]]:
    return [(p[len(prefix) + 1:], hashlib.sha256(fs.cat_file(p)).hexdigest())
            for p in sorted(fs.find(prefix)) if pattern in p and "/." not in p]


def _local_hashes(root: Path, sub: str) -> list[tuple[str, str]]:
    return [(p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted((root / sub).rglob("*")) if p.is_file() and not p.name.startswith(".")]


@pytest.fixture
def corpus(tmp_path: Path, s3: tuple[Any, str]) -> tuple[Path, Path]:
    """The same class folders and pipeline file locally and at s3://BUCKET/src, s3://BUCKET/p.json."""
    fs, bucket = s3
    src = make_class_folder(tmp_path / "src", {"a": 5, "b": 4, "c": 3})
    (src / "b" / "zz_broken.png").write_bytes(b"not a png")  # skipped the same way in both
    (src / "c" / "notes.txt").write_text("ignored the same way in both")
    cfg = tmp_path / "pipeline.json"
    cfg.write_text(json.dumps(PIPELINE))
    fs.put(str(src), f"{bucket}/src", recursive=True)
    fs.put(str(cfg), f"{bucket}/p.json")
    return src, cfg


def test_s3_to_s3_matches_local_paths_and_verifies(corpus: tuple[Path, Path], s3: tuple[Any, str],
                                                   tmp_path: Path) -> None:
    fs, bucket = s3
    src, cfg = corpus
    flags = ("--num-shards", "3", "--format", "both")
    assert _export(str(src), str(tmp_path / "local"), "--config", str(cfg), *flags).exit_code == 0
    res = _export(f"s3://{bucket}/src", f"s3://{bucket}/out", "--config", f"s3://{bucket}/p.json", *flags)
    assert res.exit_code == 0, res.output
    out = f"{bucket}/out"
    assert _s3_hashes(fs, out) == shard_hashes(tmp_path / "local")
    assert _s3_hashes(fs, out, "images/") == _local_hashes(tmp_path / "local", "images")
    for meta in ("dataset_info.json", "features.json", "label.labels.txt"):
        assert fs.cat_file(f"{out}/{meta}") == (tmp_path / "local" / meta).read_bytes()
    entry = json.loads(fs.cat_file(f"{out}/augexport.json"))["splits"]["train"]
    local = json.loads((tmp_path / "local" / "augexport.json").read_text())["splits"]["train"]
    assert entry["counts"] == local["counts"] and entry["counts"]["ignored"] == 1 and entry["ignored"] == local["ignored"]
    assert entry["counts"]["source"] == 13 and entry["counts"]["skipped"] == 1
    assert not [p for p in fs.find(out) if "/.tmp-" in p or p.endswith(".augexport.lock") or "progress" in p]
    res = CliRunner().invoke(main, ["inspect", f"s3://{bucket}/out", "--verify"])
    assert res.exit_code == 0 and "every shard matches" in res.output, res.output
    # a shard changed in the bucket is found by --verify
    name = entry["shards"][1]["file"]
    fs.pipe_file(f"{out}/{name}", fs.cat_file(f"{out}/{name}")[:-1] + b"\x00")
    res = CliRunner().invoke(main, ["inspect", f"s3://{bucket}/out", "--verify"])
    assert res.exit_code == 1 and name in res.output


def test_tfds_loads_the_s3_output_copied_back(corpus: tuple[Path, Path], s3: tuple[Any, str],
                                              tmp_path: Path) -> None:
    """TFDS reads through tf.io.gfile, which has no s3:// here: the same objects, copied back."""
    tfds = pytest.importorskip("tensorflow_datasets")
    fs, bucket = s3
    res = _export(f"s3://{bucket}/src", f"s3://{bucket}/out", "--config", f"s3://{bucket}/p.json")
    assert res.exit_code == 0, res.output
    fs.get(f"{bucket}/out", str(tmp_path / "copy"), recursive=True)
    rows = list(tfds.builder_from_directory(str(tmp_path / "copy")).as_dataset(split="train").as_numpy_iterator())
    assert len(rows) == 36 and {int(r["label"]) for r in rows} == {0, 1, 2}


def test_flat_prefix_with_labels_csv_on_s3_into_local_out(tmp_path: Path, s3: tuple[Any, str]) -> None:
    fs, bucket = s3
    flat = make_class_folder(tmp_path / "flat", {"x": 6})
    csv = "filename,label\n" + "".join(f"x/img_{i:03d}.png,{'cat' if i % 2 else 'dog'}\n" for i in range(6))
    csv += "x/missing.png,cat\n../escape.png,dog\n"
    (tmp_path / "labels.csv").write_text(csv)
    fs.put(str(flat), f"{bucket}/flat", recursive=True)
    fs.pipe_file(f"{bucket}/labels.csv", csv.encode())
    assert _export(str(flat), str(tmp_path / "local"), "--labels", str(tmp_path / "labels.csv"), "--copies", "1",
                   "--horizontal-flip").exit_code == 0
    res = _export(f"s3://{bucket}/flat", str(tmp_path / "remote"), "--labels", f"s3://{bucket}/labels.csv",
                  "--copies", "1", "--horizontal-flip", "--name", "flat")
    assert res.exit_code == 0, res.output
    assert shard_hashes(tmp_path / "remote") == shard_hashes(tmp_path / "local")
    errors = [json.loads(line)["source_id"] for line in (tmp_path / "remote" / "errors-train.jsonl").open()]
    assert sorted(errors) == ["../escape.png", "x/missing.png"]


def test_beam_s3_to_s3_matches_local_runner_with_images(corpus: tuple[Path, Path], s3: tuple[Any, str],
                                                        tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    fs, bucket = s3
    src, cfg = corpus
    flags = ("--shard-size", "8KiB", "--format", "both")
    assert _export(str(src), str(tmp_path / "local"), "--config", str(cfg), *flags).exit_code == 0
    res = CliRunner().invoke(main, ["export", f"s3://{bucket}/src", f"s3://{bucket}/out", "--config",
                                    f"s3://{bucket}/p.json", "--runner", "beam", "--quiet", *flags],
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    out = f"{bucket}/out"
    assert len(shard_hashes(tmp_path / "local")) > 2
    assert _s3_hashes(fs, out) == shard_hashes(tmp_path / "local")
    assert _s3_hashes(fs, out, "images/") == _local_hashes(tmp_path / "local", "images")
    assert not [p for p in fs.find(out) if "/.tmp-" in p]
    assert CliRunner().invoke(main, ["inspect", f"s3://{out}", "--verify"]).exit_code == 0


def _finished_shards(fs: Any, out: str) -> int:
    try:
        return len(json.loads(fs.cat_file(f"{out}/.augexport-progress-train.json"))["shards"])
    except Exception:  # not written yet, or being replaced
        return 0


def test_sigkill_then_resume_on_s3_is_byte_identical(tmp_path: Path, s3: tuple[Any, str]) -> None:
    fs, bucket = s3
    src = make_class_folder(tmp_path / "src", {"a": 40, "b": 40}, size=(48, 64))
    fs.put(str(src), f"{bucket}/src", recursive=True)
    cfg = tmp_path / "pipeline.json"
    cfg.write_text(json.dumps(PIPELINE))

    def cmd(out: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "augexport.cli", "export", f"s3://{bucket}/src", out, "--config", str(cfg),
                "--shard-size", "24KiB", "--workers", "1", "--batch-size", "4", "--quiet", *extra]

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd(str(tmp_path / "clean")), check=True, env=env, cwd=ROOT)
    expected = shard_hashes(tmp_path / "clean")
    assert len(expected) > 6
    out = f"{bucket}/out"
    rng = np.random.default_rng(99)  # test-side randomness only
    killed = 0
    for target in np.sort(rng.choice(np.arange(1, len(expected) - 2), size=2, replace=False)):
        proc = subprocess.Popen(cmd(f"s3://{out}", "--resume"), env=env, cwd=ROOT)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and _finished_shards(fs, out) < target:
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0, 0.2)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        for name, digest in _s3_hashes(fs, out):  # a final name always holds a complete shard
            assert (name, digest) in expected
        assert fs.exists(f"{out}/.augexport.lock") == (proc.returncode == -signal.SIGKILL)
    subprocess.run(cmd(f"s3://{out}", "--resume"), check=True, env=env, cwd=ROOT)  # takes the dead run's lock over
    assert killed >= 1
    assert _s3_hashes(fs, out) == expected
    assert not [p for p in fs.find(out) if "/.tmp-" in p or "/.augexport" in p]
    assert CliRunner().invoke(main, ["inspect", f"s3://{out}", "--verify"]).exit_code == 0


@pytest.mark.parametrize("out", ["h*", "exp[1]", "what?"])
def test_an_out_prefix_with_glob_characters_is_refused_before_anything_is_touched(
        tmp_path: Path, s3: tuple[Any, str], out: str) -> None:
    """fsspec expands * ? [ ] in copy and rm: such an OUT reached keys beside it (a sibling prefix's
    file was deleted by --overwrite)."""
    fs, bucket = s3
    src = make_class_folder(tmp_path / "src", {"a": 2})
    fs.pipe(f"{bucket}/hA/keep.jpg", b"keep")
    res = CliRunner().invoke(main, ["export", str(src), f"s3://{bucket}/{out}", "--workers", "1", "--overwrite"])
    assert res.exit_code == 2 and "accepted: a prefix without them" in res.output, res.output
    assert sorted(fs.find(bucket)) == [f"{bucket}/hA/keep.jpg"]


@pytest.mark.parametrize("kind", ["compressed npz", "fortran npy", "in memory"])
def test_arrays_that_need_a_spool_export_to_s3_as_to_a_folder(tmp_path: Path, s3: tuple[Any, str], kind: str) -> None:
    """The C-ordered copy such arrays need was made with mkdtemp(dir=OUT), a URL there."""
    import augexport

    fs, bucket = s3
    rng = np.random.default_rng(3)
    x, y = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), np.arange(12) % 3
    kw: dict[str, Any] = {"workers": 1, "copies": 1, "overrides": {"stages": [{"cutout": {}}]}}
    for out in (str(tmp_path / "local"), f"s3://{bucket}/out"):
        if kind == "in memory":
            augexport.export_arrays(x, y, out, **kw)
            continue
        if kind == "compressed npz":
            np.savez_compressed(tmp_path / "a.npz", x=x, y=y)
            source = f"npz:{tmp_path / 'a.npz'}"
        else:
            np.save(tmp_path / "x.npy", np.asfortranarray(x))
            np.save(tmp_path / "y.npy", y)
            source = f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}"
        api.export(source, out, **kw)
    remote = dict(_s3_hashes(fs, f"{bucket}/out"))
    local = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "local").glob("*.tfrecord-*")}
    assert remote and remote == local
