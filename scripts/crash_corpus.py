"""Interrupt exports at random moments and check that `--resume` gives the bytes of a clean run.

    PYTHONPATH=$PWD python scripts/crash_corpus.py --trials 30
    PYTHONPATH=$PWD python scripts/crash_corpus.py --trials 15 --images 60 --s3   # OUT on a loopback S3 (moto)

Each trial starts `augexport export` (keras + CutMix, several copies, small shards; every third
trial with `--format both`), interrupts it after a random delay in one of five ways (SIGKILL of
the process group, SIGKILL of the main process only, SIGTERM, SIGINT, or a double crash: killed,
resumed, killed again), then resumes to completion and compares every shard and image file with a
clean run of the same command. It prints one line per trial and the totals. With `--s3` every OUT
is a prefix in a bucket of moto's S3 server on 127.0.0.1 (started here; `pip install moto[server]
s3fs`), and the clean runs there must equal local ones byte for byte too.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


SKIP = {"augexport.json", "dataset_info.json", "features.json", "label.labels.txt", ".augexport-run"}


def files(out: Path | str) -> dict[str, str]:
    """sha256 of every output file but the run-specific metadata, by path relative to OUT."""
    if str(out).startswith("s3://"):
        import s3fs

        fs, prefix = s3fs.S3FileSystem(skip_instance_cache=True), str(out)[5:]
        return {p[len(prefix) + 1:]: hashlib.sha256(fs.cat_file(p)).hexdigest()
                for p in sorted(fs.find(prefix)) if p.rpartition("/")[2] not in SKIP}
    out = Path(out)
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in SKIP}


def remove(out: Path | str) -> None:
    if str(out).startswith("s3://"):
        import s3fs

        s3fs.S3FileSystem(skip_instance_cache=True).rm(str(out)[5:], recursive=True)
    else:
        shutil.rmtree(out, ignore_errors=True)


@contextlib.contextmanager
def loopback_s3(env: dict[str, str]) -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and one bucket; `env` gets its endpoint and dummy credentials."""
    import logging

    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
               AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_DEFAULT_REGION", "AWS_EC2_METADATA_DISABLED")})
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir("crash")
    try:
        yield "s3://crash"
    finally:
        server.stop()


def command(src: Path, out: Path | str, cfg: Path, fmt: str, *extra: str) -> list[str]:
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


def trial(k: int, fmt: str, kind: str, delay: float, src: Path, cfg: Path, clean: dict[str, dict[str, str]],
          base: str, env: dict[str, str]) -> tuple[bool, str]:
    out = f"{base}/t{k}"
    code = interrupt(command(src, out, cfg, fmt), kind, delay, env)
    if code == 0:
        remove(out)
        return True, "finished before the signal (not counted)"
    if kind == "double":
        interrupt(command(src, out, cfg, fmt, "--resume"), "kill-group", delay / 2, env)
    done = subprocess.run(command(src, out, cfg, fmt, "--resume"), env=env, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        return False, f"resume exit {done.returncode}: {done.stderr.strip()[-200:]}"
    same = files(out) == clean[fmt]
    remove(out)
    return same, "identical" if same else "DIFFERENT"


def clean_runs(src: Path, cfg: Path, tmp: Path, base: str,
               env: dict[str, str]) -> tuple[dict[str, dict[str, str]], dict[str, float]]:
    """The uninterrupted outputs per format (local, and in the store when it is one: they must
    match) and how long one run of each takes where the trials run."""
    clean: dict[str, dict[str, str]] = {}
    span: dict[str, float] = {}
    for fmt in ("tfrecord", "both"):
        for out in dict.fromkeys([str(tmp / f"clean-{fmt}"), f"{base}/clean-{fmt}"]):  # one of them when local
            t0 = time.perf_counter()
            subprocess.run(command(src, out, cfg, fmt), env=env, cwd=REPO, check=True)
            span[fmt] = time.perf_counter() - t0
            if clean.setdefault(fmt, files(out)) != files(out):
                raise SystemExit(f"the clean --format {fmt} run in {base} differs from the local one")
    return clean, span


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--s3", action="store_true", help="OUT in a loopback S3 server (moto)")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmpdir, \
            (loopback_s3(env) if args.s3 else contextlib.nullcontext(tmpdir)) as base:
        tmp = Path(tmpdir)
        src = make_source(tmp / "src", args.images)
        cfg = tmp / "pipeline.json"
        cfg.write_text(json.dumps(PIPELINE))
        clean, span = clean_runs(src, cfg, tmp, str(base), env)
        results = []
        for k in range(args.trials):
            kind, fmt = KINDS[k % len(KINDS)], "both" if k % 3 == 0 else "tfrecord"
            delay = float(rng.uniform(0.2, max(0.3, 0.9 * span[fmt])))
            ok, what = trial(k, fmt, kind, delay, src, cfg, clean, str(base), env)
            if not what.startswith("finished"):
                results.append((kind, ok))
            print(f"trial {k:3d} {kind:10s} after {delay:5.2f} s: {what}", flush=True)
    print(f"\n{sum(ok for _, ok in results)} of {len(results)} interrupted runs resumed byte-identical")
    for kind in KINDS:
        got = [ok for kd, ok in results if kd == kind]
        print(f"  {kind:10s} {sum(got)}/{len(got)}")


if __name__ == "__main__":
    main()
