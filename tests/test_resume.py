"""Crash safety: kill -9 at random points + `--resume` gives the bytes of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from augexport.cli import main
from tests.conftest import make_class_folder
from tests.helpers import manifest, shard_hashes

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = {"copies": 2, "stages": [{"cutout": {"size": 0.3, "p": 0.7}}], "mix": {"method": "mixup", "p": 0.5}}


def _cmd(src: Path, out: Path, cfg: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "augexport.cli", "export", str(src), str(out), "--config", str(cfg),
            "--shard-size", "64KiB", "--workers", "1", "--batch-size", "4", "--quiet", *extra]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    src = make_class_folder(root / "src", {"a": 100, "b": 100, "c": 100}, size=(64, 80))
    cfg = root / "pipeline.json"
    cfg.write_text(json.dumps(PIPELINE))
    return src, cfg


def _finished_shards(out: Path) -> int:
    try:
        return len(json.loads((out / ".augexport-progress-train.json").read_text())["shards"])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkill_at_random_points_then_resume_is_byte_identical(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    src, cfg = corpus
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    clean = tmp_path / "clean"
    subprocess.run(_cmd(src, clean, cfg), check=True, env=env, cwd=ROOT)
    expected = shard_hashes(clean)
    assert len(expected) > 5

    out = tmp_path / "out"
    # kill points: after a random number of finished shards (+ a random extra delay), each run further on
    rng = np.random.default_rng(1234)  # test-side randomness only
    targets = np.sort(rng.choice(np.arange(1, len(expected) - 2), size=3, replace=False))
    killed_mid_run = 0
    for target in targets:
        proc = subprocess.Popen(_cmd(src, out, cfg, "--resume"), env=env, cwd=ROOT)
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline and _finished_shards(out) < target:
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0, 0.05)))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        proc.wait()
        # a file under a final shard name is always complete (killed while finalizing at worst)
        for name, digest in shard_hashes(out):
            assert (name, digest) in expected
    subprocess.run(_cmd(src, out, cfg, "--resume"), check=True, env=env, cwd=ROOT)
    assert killed_mid_run >= 1
    assert shard_hashes(out) == expected
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".augexport-progress-*"))
    m = manifest(out)
    assert m["splits"]["train"]["counts"] == manifest(clean)["splits"]["train"]["counts"]
    assert CliRunner().invoke(main, ["inspect", str(out), "--verify"]).exit_code == 0


def test_sigterm_stops_cleanly_and_resume_checks_arguments(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    src, cfg = corpus
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(src, out, cfg), env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob(".augexport-progress-*")) and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before SIGTERM arrived")
    assert proc.returncode == 143, err
    assert "--resume" in err
    assert not list(out.glob("src-train.tfrecord-*"))
    # a plain rerun refuses, naming --resume
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--workers", "1"])
    assert res.exit_code == 2 and "--resume" in res.output
    # resuming with another configuration is refused, naming what differs
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--shard-size", "32KiB",
                                    "--seed", "5", "--resume", "--workers", "1"])
    assert res.exit_code == 2 and "pipeline (--config, --seed" in res.output, res.output
    assert "--shard-size (" in res.output and "shard_bytes" not in res.output  # named as the user gave it
    # the right arguments complete it
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--shard-size", "64KiB",
                                    "--resume", "--workers", "2", "--quiet"])
    assert res.exit_code == 0, res.output
    clean = tmp_path / "clean"
    CliRunner().invoke(main, ["export", str(src), str(clean), "--config", str(cfg), "--shard-size", "64KiB",
                              "--workers", "1", "--quiet"])
    assert shard_hashes(out) == shard_hashes(clean)
    # resuming a finished split is a no-op that succeeds
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--config", str(cfg), "--shard-size", "64KiB",
                                    "--resume", "--workers", "1", "--quiet"])
    assert res.exit_code == 0 and shard_hashes(out) == shard_hashes(clean)


def test_write_error_exits_1_and_finalizes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 6})
    from augexport.sinks import tfrecord

    calls = {"n": 0}
    real_write = tfrecord._HashingFile.write

    def failing_write(self, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(28, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(tfrecord._HashingFile, "write", failing_write)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--shard-size", "1KiB"])
    assert res.exit_code == 1
    assert "No space left on device" in res.output
    assert not out.exists()  # the run created OUT, wrote nothing final, and removed it again


@pytest.mark.parametrize("fmt", ["images", "both"])
def test_disk_full_with_image_files_leaves_no_temporaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          fmt: str) -> None:
    """A full disk fails the image writes and then the flush of the labels rows as the run aborts:
    the temporary image folder must go all the same."""
    from augexport.outdir import OutDir
    from augexport.sinks import label_rows

    src = make_class_folder(tmp_path / "src", {"a": 6, "b": 4})
    real_put = OutDir.put
    calls = {"n": 0}

    def put(self: OutDir, name: str, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] >= 5:
            raise OSError(28, "No space left on device")
        real_put(self, name, data)

    def close(self: label_rows.FileRows) -> None:
        self.f.close()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(OutDir, "put", put)
    monkeypatch.setattr(label_rows.FileRows, "close", close)
    out = tmp_path / "out"
    args = ["--workers", "1", "--format", fmt, "--copies", "2", "--rotation-range", "5"]
    res = CliRunner().invoke(main, ["export", str(src), str(out), *args])
    assert res.exit_code == 1 and "No space left on device" in res.output, res.output
    assert not out.exists()  # created by the run, so removed with everything in it
    monkeypatch.undo()
    assert CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--format", fmt]).exit_code == 0
    monkeypatch.setattr(OutDir, "put", put)
    monkeypatch.setattr(label_rows.FileRows, "close", close)
    calls["n"] = 0
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--split", "val", *args])
    assert res.exit_code == 1, res.output
    assert sorted(p.name for p in (out / "images").iterdir()) == ["train"]  # no images/.tmp-val left


def test_ctrl_c_with_workers_stops_everything_and_resumes(corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """SIGINT to the whole process group (a terminal's Ctrl-C): exit 130 at once, no worker traceback,
    no worker left running, and --resume completes to the clean bytes."""
    src, cfg = corpus
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "augexport.cli", "export", str(src), str(out), "--config", str(cfg), "--copies", "8",
           "--shard-size", "64KiB", "--workers", "2", "--batch-size", "2", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and _finished_shards(out) < 2 and proc.poll() is None:
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.skip("the run finished before Ctrl-C arrived")
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    deadline = time.time() + 10  # workers end their running task, then exit with the main process
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # no process of the group (no worker) is left
    subprocess.run([*cmd, "--resume"], check=True, env=env, cwd=ROOT)
    clean = tmp_path / "clean"
    subprocess.run([*cmd[:5], str(clean), *cmd[6:]], check=True, env=env, cwd=ROOT)
    assert shard_hashes(out) == shard_hashes(clean)
