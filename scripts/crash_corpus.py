"""Interrupt exports at random moments and check that `--resume` gives the bytes of a clean run.

    PYTHONPATH=$PWD python scripts/crash_corpus.py --trials 30

Each trial starts `augexport export` (keras + CutMix, several copies, small shards; every third
trial with `--format both`), interrupts it after a random delay in one of five ways (SIGKILL of
the process group, SIGKILL of the main process only, SIGTERM, SIGINT, or a double crash: killed,
resumed, killed again), then resumes to completion and compares every shard and image file with a
clean run of the same command. It prints one line per trial and the totals.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
KINDS = ("kill-group", "kill-main", "sigterm", "sigint", "double")
PIPELINE = {"copies": 6, "stages": [{"keras": {"rotation_range": 25, "zoom_range": 0.2, "horizontal_flip": True}},
                                    {"cutout": {"p": 0.5}}], "mix": {"method": "cutmix", "p": 0.5}}


def make_source(root: Path, n: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(3)
    for i in range(n):
        folder = root / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((96, 72), Image.Resampling.BILINEAR).save(folder / f"img{i:03d}.png")
    return root


def files(out: Path) -> dict[str, str]:
    skip = {"augexport.json", "dataset_info.json", "features.json", "label.labels.txt", ".augexport-run"}
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in skip}


def command(src: Path, out: Path, cfg: Path, fmt: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "augexport", "export", str(src), str(out), "--config", str(cfg), "--format", fmt,
            "--shard-size", "64KiB", "--workers", "2", "--batch-size", "4", "--quiet", *extra]


def interrupt(cmd: list[str], kind: str, delay: float, env: dict[str, str]) -> int:
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(delay)
    if proc.poll() is None:
        if kind == "kill-main":
            os.kill(proc.pid, signal.SIGKILL)
        else:
            sig = {"sigterm": signal.SIGTERM, "sigint": signal.SIGINT}.get(kind, signal.SIGKILL)
            os.killpg(proc.pid, sig)
    return proc.wait(timeout=120)


def trial(k: int, kind: str, delay: float, src: Path, cfg: Path, clean: dict[str, dict[str, str]], tmp: Path,
          env: dict[str, str]) -> tuple[bool, str]:
    fmt = "both" if k % 3 == 0 else "tfrecord"
    out = tmp / f"t{k}"
    code = interrupt(command(src, out, cfg, fmt), kind, delay, env)
    if code == 0:
        shutil.rmtree(out, ignore_errors=True)
        return True, "finished before the signal (not counted)"
    if kind == "double":
        interrupt(command(src, out, cfg, fmt, "--resume"), "kill-group", delay / 2, env)
    done = subprocess.run(command(src, out, cfg, fmt, "--resume"), env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        return False, f"resume exit {done.returncode}: {done.stderr.strip()[-200:]}"
    same = files(out) == clean[fmt]
    shutil.rmtree(out, ignore_errors=True)
    return same, "identical" if same else "DIFFERENT"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        src = make_source(tmp / "src", args.images)
        cfg = tmp / "pipeline.json"
        cfg.write_text(json.dumps(PIPELINE))
        clean = {}
        for fmt in ("tfrecord", "both"):
            t0 = time.perf_counter()
            subprocess.run(command(src, tmp / f"clean-{fmt}", cfg, fmt), env=env, cwd=REPO, check=True)
            clean[fmt] = files(tmp / f"clean-{fmt}")
            span = time.perf_counter() - t0
        results = []
        for k in range(args.trials):
            kind = KINDS[k % len(KINDS)]
            delay = float(rng.uniform(0.2, max(0.3, 0.9 * span)))
            ok, what = trial(k, kind, delay, src, cfg, clean, tmp, env)
            if not what.startswith("finished"):
                results.append((kind, ok))
            print(f"trial {k:3d} {kind:10s} after {delay:5.2f} s: {what}", flush=True)
    print(f"\n{sum(ok for _, ok in results)} of {len(results)} interrupted runs resumed byte-identical")
    for kind in KINDS:
        got = [ok for kd, ok in results if kd == kind]
        print(f"  {kind:10s} {sum(got)}/{len(got)}")


if __name__ == "__main__":
    main()
