"""Benchmark of the export path against the codec floor, a naive ImageDataGenerator loop and the
scripts a user would write instead (albumentations + a process pool; tf.data + Keras 3 layers).

    PYTHONPATH=$PWD python scripts/bench.py            # full: 1,000 JPEGs, 10,000 PNGs, 100,000 arrays: ~5-8 min on 2 cores
    PYTHONPATH=$PWD python scripts/bench.py --quick    # ~2-3 min
    pip install -e '.[cpu,bench]'                      # the peers' packages (albumentations)

Builds its own data set under a temp dir from photos bundled with scikit-image, then runs every
row in a fresh child process (same images, same worker count, `--repeats` times) and prints
medians and a table of RATIOS: on a shared machine absolute images/s are noise, ratios measured
back to back are not. Each child times only the work (pool start-up, decode, augment, encode,
write), not interpreter start-up or imports (a pipeline's libraries, e.g. imgaug, are imported
before the clock starts, as the peers' rows import theirs); `augexport --help` is timed as a whole
process because that is what a user waits for. Row k times each `tf_image` kernel against
tf.image's own on one 224x224 image, single-threaded, in a child that imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
KERAS_BASIC = {"rotation_range": 20, "width_shift_range": 0.1, "height_shift_range": 0.1, "shear_range": 10,
               "zoom_range": 0.1, "horizontal_flip": True}
IMGAUG_BASIC = [{"Fliplr": {"p": 0.5}}, {"Affine": {"rotate": [-20, 20]}}, {"Multiply": {"mul": [0.8, 1.2]}},
                {"GaussianBlur": {"sigma": [0.0, 1.0], "p": 0.3}}]
ONE_COPY = {"copies": 1, "include_original": False}


def sample_pipeline(keras_only: bool = False) -> dict[str, Any]:
    """sample_data/pipeline.yaml (224x224: keras, five tf_image ops, cutout, CutMix) on one copy of
    each image; with keras_only, its keras stage alone (no other stage, no mixing)."""
    import yaml

    spec = yaml.safe_load((REPO / "sample_data" / "pipeline.yaml").read_text())
    if keras_only:
        spec["stages"] = [st for st in spec["stages"] if "keras" in st]
        spec.pop("mix", None)
    return {**spec, **ONE_COPY}


PIPELINES: dict[str, dict[str, Any] | None] = {
    "c": None,  # originals only: the default pipeline
    "r": None,
    "d": {**ONE_COPY, "stages": [{"keras": KERAS_BASIC}]},
    "e": {**ONE_COPY, "stages": [{"imgaug": IMGAUG_BASIC}]},
    "f": {**ONE_COPY, "stages": [{"keras": KERAS_BASIC}], "mix": {"method": "cutmix", "alpha": 1.0, "p": 0.5}},
    "s": sample_pipeline(),
    "t": sample_pipeline(keras_only=True),
}
ROW_TITLES = {
    "a": "(a) decode+encode floor (simplejpeg)",
    "p": "(p) (a) with forked workers",
    "b": "(b) naive tf.keras ImageDataGenerator loop",
    "c": "(c) augexport export, originals only",
    "r": "(r) (c) re-encoded: --quality 85 < the sources' 90",
    "d": "(d) augexport keras-basic",
    "e": "(e) augexport imgaug pipeline",
    "f": "(f) augexport keras-basic + CutMix",
    "s": "(s) augexport sample_data/pipeline.yaml, 1 copy",
    "t": "(t) augexport (s) with its keras stage only",
    "g": "(g) albumentations script (peer_albumentations)",
    "h": "(h) tf.data + Keras 3 layers (peer_tfdata)",
}
NEEDS_STAGE = {"d": "keras", "e": "imgaug", "f": "keras", "s": "keras", "t": "keras"}
NEEDS_MODULE = {"g": "albumentations", "b": "tensorflow", "h": "tensorflow", "k": "tensorflow"}
KINDS = {"a": "floor", "p": "floor", "b": "idg", "g": "albumentations", "h": "tfdata"}  # the rest: export
# how the floor starts its workers: (a) spawns them, as the export did when the speed targets were
# set against it; (p) forks them, as the export now does where it may (engine.worker_start_method)
FLOOR_START = {"a": "spawn", "p": "fork"}
# export options of a row: (r) asks for a quality below the sources' own, so no original keeps its
# JPEG stream (augexport/jpeg_stream.py) and each is decoded and re-encoded, as the floor does
OPTIONS: dict[str, dict[str, Any]] = {"r": {"quality": 85}}


# -- data set --------------------------------------------------------------------------------
def _photos() -> list[np.ndarray]:
    """Ten RGB photos bundled with scikit-image (no download)."""
    import skimage.data as d
    from skimage import io

    grey = d.camera()
    moto = io.imread(Path(d.__file__).parent / "motorcycle_left.png")[:, :, :3]
    return [d.chelsea(), d.coffee(), d.rocket(), d.astronaut(), d.hubble_deep_field(),
            d.immunohistochemistry(), d.retina(), d.colorwheel(), moto, np.stack([grey] * 3, axis=2)]


def _variant(photo: np.ndarray, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A random crop (50-100% of the photo), maybe flipped, scaled to size=(H, W)."""
    import cv2

    h, w = photo.shape[:2]
    s = rng.uniform(0.5, 1.0)
    ch, cw = max(8, int(h * s)), max(8, int(w * s))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    crop = photo[y : y + ch, x : x + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return cv2.resize(np.ascontiguousarray(crop), (size[1], size[0]), interpolation=cv2.INTER_AREA)


def make_dataset(root: Path, n_jpeg: int, n_png: int, n_png_small: int) -> dict[str, Path]:
    """root/jpeg/<class>/*.jpg (500x375 landscape, some 375x500), root/png/<class>/*.png (32x32) and
    root/png_small: hard links to the first `n_png_small` PNGs (same bytes, for the RSS comparison)."""
    import cv2
    import simplejpeg

    rng = np.random.default_rng(8)
    photos = _photos()
    paths = {"jpeg": root / "jpeg", "png": root / "png", "png_small": root / "png_small"}
    for i in range(n_jpeg):
        c = i % len(photos)
        size = (375, 500) if i % 5 else (500, 375)
        img = _variant(photos[c], rng, size)
        out = paths["jpeg"] / f"class{c}" / f"img{i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(simplejpeg.encode_jpeg(img, quality=90, colorspace="RGB", colorsubsampling="420"))
    for i in range(n_png):
        c = i % len(photos)
        img = _variant(photos[c], rng, (32, 32))
        rel = Path(f"class{c}") / f"img{i:05d}.png"
        for key in ("png", "png_small") if i < n_png_small else ("png",):
            dst = paths[key] / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if key == "png":
                ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
                assert ok
                dst.write_bytes(buf.tobytes())
            else:
                dst.unlink(missing_ok=True)  # --keep into a folder an earlier run built
                os.link(paths["png"] / rel, dst)
    return paths


def _files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


# -- rows, each run in a fresh child process --------------------------------------------------
def cpu_seconds() -> float:
    """CPU of this process and of its children that were reaped (a pool's workers once joined)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Timed:
    """Wall and CPU seconds of a row's work. Steal time and waiting for a core stretch the wall
    clock, not the CPU a row used (contention for caches and memory still inflates both)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def stop(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, cpu_seconds() - self.cpu


def _floor_task(paths: list[str]) -> int:
    """Read, decode, encode (q95, 4:2:0 like augexport): the least any JPEG->JPEG export must do."""
    import simplejpeg

    total = 0
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        img = simplejpeg.decode_jpeg(data, colorspace="RGB")
        total += len(simplejpeg.encode_jpeg(img, quality=95, colorspace="RGB", colorsubsampling="420"))
    return total


def row_floor(files: list[str], workers: int, batch: int, start: str) -> tuple[float, float]:
    import concurrent.futures as cf
    import multiprocessing as mp

    clock = Timed()
    if workers == 1:  # in-process, as `augexport export --workers 1` runs
        _floor_task(files)
        return clock.stop()
    chunks = [files[i : i + batch] for i in range(0, len(files), batch)]
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context(start)) as pool:
        sum(pool.map(_floor_task, chunks))
    return clock.stop()


def _idg_worker(files: list[str], labels: list[int], out: str, barrier: Any, seconds: Any) -> None:
    """The loop the seeds write: load_img -> img_to_array -> random_transform -> encode_jpeg -> Example."""
    import tensorflow as tf
    from PIL import Image

    idg = tf.keras.preprocessing.image.ImageDataGenerator(**KERAS_BASIC)

    def feature_bytes(v: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    tf.io.encode_jpeg(tf.zeros((8, 8, 3), tf.uint8))  # warm the op outside the timed part
    barrier.wait()
    t0 = time.perf_counter()
    with tf.io.TFRecordWriter(out) as writer:
        for path, label in zip(files, labels, strict=True):
            x = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
            x = idg.random_transform(x)
            data = tf.io.encode_jpeg(x.astype(np.uint8), quality=95).numpy()
            ex = tf.train.Example(features=tf.train.Features(feature={
                "image": feature_bytes(data),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}))
            writer.write(ex.SerializeToString())
    seconds.value = time.perf_counter() - t0


def row_idg(files: list[str], workers: int, tmp: str) -> tuple[float, None]:
    """`workers` processes, each its share; timed from a common start after TF import to the last
    (no CPU figure: each process's CPU includes its TensorFlow import)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers)
    labels = [int(Path(f).parent.name.removeprefix("class")) for f in files]
    secs = [ctx.Value("d", 0.0) for _ in range(workers)]
    procs = [ctx.Process(target=_idg_worker, args=(files[k::workers], labels[k::workers], f"{tmp}/idg{k}.tfrecord",
                                                   barrier, secs[k])) for k in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"IDG worker failed with exit code {p.exitcode}")
    return max(s.value for s in secs), None


def row_export(src: str, out: str, pipeline: dict[str, Any] | None, workers: int, batch: int,
               options: dict[str, Any] | None = None) -> tuple[float, float]:
    """`augexport export` as the CLI runs it (its allocator setting included: augexport.allocator)."""
    from augexport import allocator, api

    allocator.tune()
    config = None
    if pipeline is not None:
        config = f"{out}.json"
        Path(config).write_text(json.dumps(pipeline))
        api.resolve_pipeline(config)  # imports the stages' libraries (imgaug) before the clock starts
    clock = Timed()
    api.export(src, out, config=config, workers=workers, batch_size=batch, overwrite=True, **(options or {}))
    return clock.stop()


def row_peer(kind: str, src: str, out: str, workers: int, batch: int) -> tuple[float, float]:
    """Rows (g) and (h): the peer scripts' own `run`, their imports done before the clock starts."""
    sys.path.insert(0, str(REPO / "scripts"))
    if kind == "albumentations":
        import peer_albumentations as peer

        items = peer.list_images(Path(src))
        clock = Timed()
        peer.run(items, out, workers, chunksize=batch)
    else:
        import peer_tfdata as peer

        peer.configure(workers)
        items = peer.list_images(Path(src))
        clock = Timed()
        peer.run(items, out, workers)
    return clock.stop()


def _kernel_pairs() -> list[tuple[str, Any, Any]]:
    """(name, augexport's kernel, tf.image's) on one 224x224 photo; TF returns a numpy array too."""
    import cv2
    import tensorflow as tf

    from augexport.stages.tf_image import OPS, central_box

    x = cv2.resize(_photos()[0], (224, 224), interpolation=cv2.INTER_AREA)
    tx = tf.constant(x)
    box = central_box(224, 224, 0.875)
    y0, x0, y1, x1 = box

    def ours(op: str, **prm: Any) -> Any:
        return lambda: OPS[op].apply(x, prm)

    return [
        ("adjust_brightness", ours("random_brightness", delta=0.1), lambda: tf.image.adjust_brightness(tx, 0.1).numpy()),
        ("adjust_contrast", ours("random_contrast", factor=1.3), lambda: tf.image.adjust_contrast(tx, 1.3).numpy()),
        ("adjust_saturation", ours("random_saturation", factor=1.3), lambda: tf.image.adjust_saturation(tx, 1.3).numpy()),
        ("adjust_hue", ours("random_hue", delta=0.05), lambda: tf.image.adjust_hue(tx, 0.05).numpy()),
        ("adjust_jpeg_quality", ours("random_jpeg_quality", quality=75),
         lambda: tf.image.adjust_jpeg_quality(tx, 75).numpy()),
        ("flip_left_right", ours("random_flip_left_right", flip=True), lambda: tf.image.flip_left_right(tx).numpy()),
        ("flip_up_down", ours("random_flip_up_down", flip=True), lambda: tf.image.flip_up_down(tx).numpy()),
        ("central_crop", ours("central_crop", box=box, resize=False), lambda: tf.image.central_crop(tx, 0.875).numpy()),
        ("crop_to_bounding_box", ours("random_crop", box=box, resize=False),
         lambda: tf.image.crop_to_bounding_box(tx, y0, x0, y1 - y0, x1 - x0).numpy()),
        ("crop + resize", ours("random_crop", box=box, resize=True),
         lambda: tf.image.resize(tf.image.crop_to_bounding_box(tx, y0, x0, y1 - y0, x1 - x0), (224, 224)).numpy()),
    ]


def row_kernels(rounds: int, calls: int = 20) -> dict[str, list[float]]:
    """Per-op median ms of augexport's tf_image kernel and tf.image's, both single-threaded (TF's
    intra/inter-op pools of 1, OpenCV's of 1), alternating in rounds so load hits both alike."""
    import cv2
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(1)
    table: dict[str, list[float]] = {}
    for name, ours, theirs in _kernel_pairs():
        times: dict[int, list[float]] = {0: [], 1: []}
        ours(), theirs()  # warm-up: TF traces, first allocations
        for _ in range(rounds):
            for k, fn in enumerate((ours, theirs)):
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                times[k].append((time.perf_counter() - t0) / calls * 1e3)
        table[name] = [statistics.median(times[0]), statistics.median(times[1])]
    return table


def make_arrays(root: Path, n: int) -> dict[str, str]:
    """Fashion-MNIST-shaped arrays (fixed seed): N×28×28 uint8 pixels and 10 classes, as .npy files,
    at N and N/10 images (the streaming row)."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    out = {}
    for key, k in (("arrays_small", n // 10), ("arrays", n)):
        np.save(root / f"x_{k}.npy", x[:k])
        np.save(root / f"y_{k}.npy", y[:k])
        out[key] = f"npy:{root / f'x_{k}.npy'},{root / f'y_{k}.npy'}"
    return out


def vm_hwm_kib(pid: int | str = "self") -> int | None:
    """Peak resident set of a process since it exec'd (VmHWM), or None without /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), None)


_PEAK_POLLER = """
import os, select, sys
pid, own, peak, peak_own = sys.argv[1], sys.argv[2] == "own", 0, 0
while not select.select([sys.stdin], [], [], 0.05)[0]:  # until the row closes the pipe
    kids = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.update(f.read().split())
    except OSError:
        pass
    for kid in kids:
        try:
            with open(f"/proc/{kid}/status") as f:
                peak = max([peak] + [int(l.split()[1]) for l in f if l.startswith("VmHWM:")])
            if own:  # pages no other process maps (walking them costs the kernel more: memory rows only)
                with open(f"/proc/{kid}/smaps_rollup") as f:
                    peak_own = max(peak_own, sum(int(l.split()[1]) for l in f if l.startswith("Private_")))
        except OSError:
            pass
print(peak, peak_own)
"""


class WorkerPeak:
    """Largest VmHWM of the row's child processes (its workers) while it runs, sampled from /proc
    every 50 ms by a separate process: a sampling thread in the row's own process would make the
    export spawn its workers instead of forking them (engine.worker_start_method).

    Why not ru_maxrss: a process started by fork+exec (every spawned worker, and this child row
    itself, started by the bench) has a ru_maxrss of at least its parent's resident set at the
    moment of the fork (Linux carries the maximum across exec), so RUSAGE_CHILDREN and even this
    process's RUSAGE_SELF can show the launcher's memory instead of their own. VmHWM is reset by
    exec; a forked worker's counts the pages it still shares with the main process, so with `own`
    the peak of each worker's private pages (its own memory) is sampled too."""

    def __init__(self, own: bool = False) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", _PEAK_POLLER, str(os.getpid()), "own" if own else "-"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def stop(self) -> tuple[int, int]:
        out, _ = self._proc.communicate("")
        peak, own = (int(x) for x in out.split())
        return peak, own


def child(spec: dict[str, Any]) -> None:
    kind = spec["kind"]
    if kind == "kernels":
        print(json.dumps({"kernels": row_kernels(spec["rounds"])}))
        return
    peak = WorkerPeak(own=spec.get("memory", False))
    if kind == "floor":
        seconds, cpu = row_floor(_files(Path(spec["src"])), spec["workers"], spec["batch"], spec["start"])
    elif kind == "idg":
        seconds, cpu = row_idg(_files(Path(spec["src"]))[: spec["limit"]], spec["workers"], spec["tmp"])
    elif kind in ("albumentations", "tfdata"):
        seconds, cpu = row_peer(kind, spec["src"], spec["out"], spec["workers"], spec["batch"])
    else:
        seconds, cpu = row_export(spec["src"], spec["out"], spec["pipeline"], spec["workers"], spec["batch"],
                             spec.get("options"))
    me = vm_hwm_kib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers, own = peak.stop()
    workers = workers or resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_main_kib": me, "rss_worker_kib": workers,
                      "own_worker_kib": own}))


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    # OPENBLAS_NUM_THREADS as `augexport` sets it for itself (augexport/__main__.py): every row's
    # process then runs one thread, and the export forks its workers as the CLI does
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TF_CPP_MIN_LOG_LEVEL": "3", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['kind']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- driver ----------------------------------------------------------------------------------
def registered_stages() -> set[str]:
    from augexport.stages import builtin_stages

    return set(builtin_stages())


def time_help(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "augexport.cli", "--help"], check=True, capture_output=True, cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _verdict(x: float | None, target: float | None, text: str) -> str:
    """`87% (meets target)`; `n/a` when a row did not run."""
    if x is None:
        return "n/a"
    return text if target is None else f"{text} ({'meets' if x >= target else 'MISSES'} target)"


def _available(row: str, stages: set[str]) -> str | None:
    """Why a row cannot run here (a stage or a peer's package missing), or None."""
    import importlib.util

    if row in NEEDS_STAGE and NEEDS_STAGE[row] not in stages:
        return f"{NEEDS_STAGE[row]} stage missing"
    if row in NEEDS_MODULE and importlib.util.find_spec(NEEDS_MODULE[row]) is None:
        return f"{NEEDS_MODULE[row]} not installed (pip install -e '.[cpu,bench]')"
    return None


def run_rows(args: argparse.Namespace, data: dict[str, Path], tmp: str, sizes: dict[str, int],
             stages: set[str]) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """Every (row, worker count) `repeats` times, round-robin, so a burst of load hits every row alike."""
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    rows = [r for r in args.rows if r in ROW_TITLES and _available(r, stages) is None]
    for rep in range(sizes["repeats"]):
        for row in rows:
            for w in sizes["workers"]:
                n = sizes["idg"] if row == "b" else sizes["jpeg"]
                spec: dict[str, Any] = {"kind": KINDS.get(row, "export"), "src": str(data["jpeg"]), "workers": w,
                                        "batch": args.batch_size, "limit": n, "tmp": tmp,
                                        "out": f"{tmp}/out-{row}{w}", "pipeline": PIPELINES.get(row),
                                        "options": OPTIONS.get(row), "start": FLOOR_START.get(row)}
                got = run_child(spec)
                runs.setdefault((row, w), []).append(got)
                cpu = "" if got["cpu"] is None else f", CPU {got['cpu']:6.2f} s"
                print(f"  round {rep + 1}/{sizes['repeats']} {row} workers={w}: {got['seconds']:6.2f} s{cpu} for {n}",
                      flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: 200 JPEGs, 2,000 PNGs, 20,000 arrays, 2 repeats")
    ap.add_argument("--jpegs", type=int, help="500x375 JPEGs (default 1000)")
    ap.add_argument("--pngs", type=int, help="32x32 PNGs for the RSS row (default 10000)")
    ap.add_argument("--idg-images", type=int, help="images the slow IDG row processes (default 200)")
    ap.add_argument("--arrays", type=int, help="28x28 array images for the array-source RSS row (default 100000)")
    ap.add_argument("--repeats", type=int, help="runs per row; the median is printed (default 3)")
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rows", default="apbcrdefstghk", help="subset of rows to run, e.g. ac (k: the tf_image kernels)")
    ap.add_argument("--keep", metavar="DIR", help="build the data set in DIR and keep it")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    n_jpeg = args.jpegs or (200 if args.quick else 1000)
    n_png = args.pngs or (2000 if args.quick else 10000)
    sizes = {"jpeg": n_jpeg, "png": n_png, "idg": min(n_jpeg, args.idg_images or (60 if args.quick else 200)),
             "repeats": args.repeats or (2 if args.quick else 3), "workers": [int(w) for w in args.workers.split(",")]}
    stages = registered_stages()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="augexport-bench-") as tmp:
        root = Path(args.keep or tmp)
        print(f"building data set in {root}: {n_jpeg} JPEGs ~500x375, {n_png} PNGs 32x32 ...", flush=True)
        data = make_dataset(root, n_jpeg, n_png, n_png // 10)
        print(f"  done in {time.perf_counter() - t_start:.1f} s; cores {os.cpu_count()}, repeats {sizes['repeats']}",
              flush=True)
        n_arrays = args.arrays or (20000 if args.quick else 100000)
        data.update({k: Path(v) for k, v in make_arrays(root, n_arrays).items()})
        runs = run_rows(args, data, tmp, sizes, stages)
        kernels = None
        if "k" in args.rows and _available("k", stages) is None:
            print("  row k: tf_image kernels against tf.image ...", flush=True)
            kernels = run_child({"kind": "kernels", "rounds": 5 if args.quick else 15})["kernels"]
        images = {key: sizes["idg"] if key[0] == "b" else n_jpeg for key in runs}
        rate = {key: images[key] / statistics.median(r["seconds"] for r in v) for key, v in runs.items()}
        cpu_ms = {key: statistics.median(r["cpu"] for r in v) / images[key] * 1e3
                  for key, v in runs.items() if v[0]["cpu"] is not None}
        mem_row = "d" if "keras" in stages else "c"
        rss = {key: run_child({"kind": "export", "memory": True, "src": str(data[key]), "out": f"{tmp}/out-rss-{key}", "workers": 2,
                               "batch": args.batch_size, "pipeline": PIPELINES[mem_row]})
               for key in ("png_small", "png", "arrays_small", "arrays")}
        help_s = time_help(max(3, sizes["repeats"]))
        elapsed = time.perf_counter() - t_start
    report_rates(rate, sizes["workers"], stages, args.rows)
    report_ratios(rate, sizes["workers"])
    report_cpu(cpu_ms, sizes["workers"], args.rows)
    if kernels is not None:
        report_kernels(kernels)
    report_memory(rss, mem_row, n_png)
    report_arrays(rss, mem_row, n_arrays)
    print(f"augexport --help: {help_s:.2f} s ({'meets' if help_s < 0.5 else 'MISSES'} < 0.5 s)")
    print(f"bench wall time: {elapsed:.0f} s")


def report_rates(rate: dict[tuple[str, int], float], workers: list[int], stages: set[str], rows: str) -> None:
    print("\nMedian throughput (source images/s; absolute numbers depend on the machine's load)")
    print(f"{'row':<52}" + "".join(f"{f'{w} worker' + ('s' if w > 1 else ''):>12}" for w in workers))
    for row, title in ROW_TITLES.items():
        if row not in rows:
            continue
        cells = [f"{rate[row, w]:12.1f}" if (row, w) in rate else f"{'n/a':>12}" for w in workers]
        why = _available(row, stages)
        print(f"{title:<52}" + "".join(cells) + (f"  n/a ({why})" if why else ""))


#: (numerator, denominator, target, "%" or "x"): the ratios the project is judged by.
RATIOS = [("c", "a", 0.90, "%"), ("r", "a", None, "%"), ("d", "a", 0.55, "%"), ("d", "b", 8.0, "x"), ("d", "g", 1.2, "x"),
          ("d", "h", None, "x"), ("e", "a", 0.40, "%"), ("s", "t", 0.40, "%"), ("f", "d", 0.85, "%"),
          ("g", "a", None, "%"), ("c", "p", None, "%"), ("d", "p", None, "%"), ("e", "p", None, "%"),
          ("g", "p", None, "%")]


def report_ratios(rate: dict[tuple[str, int], float], workers: list[int]) -> None:
    def r(num: str, den: str, w: int) -> float | None:
        a, b = rate.get((num, w)), rate.get((den, w))
        return a / b if a and b else None

    print("\nRatios (same run, same images, same worker count)")
    lines = []
    for w in workers:
        for num, den, target, kind in RATIOS:
            x = r(num, den, w)
            text = "" if x is None else (f"{x:.0%}" if kind == "%" else f"{x:.2f}x")
            goal = "" if target is None else (f" >= {target:.0%}" if kind == "%" else f" >= {target:g}x")
            lines.append((f"({num}) / ({den})  {w}w{goal}", _verdict(x, target, text)))
    lo, hi = min(workers), max(workers)
    if hi != lo:
        floor, forked = _scaling(rate, "a", lo, hi), _scaling(rate, "p", lo, hi)
        for row in "apcrdefstg":
            x = _scaling(rate, row, lo, hi)
            if row in "cd" and x and floor:  # target: >= 90% of the floor's own scaling on this box
                share = x / floor
                also = f"; {x / forked:.0%} of (p)'s" if forked else ""
                lines.append((f"({row}) {hi}w / {lo}w", _verdict(share, 0.9, f"{x:.2f}x = {share:.0%} of the floor's")
                              + f" (target >= 90% of the floor's scaling{also})"))
            else:
                lines.append((f"({row}) {hi}w / {lo}w", f"{x:.2f}x" if x else "n/a"))
    for name, value in lines:
        print(f"  {name:<26} {value}")


def report_cpu(cpu_ms: dict[tuple[str, int], float], workers: list[int], rows: str) -> None:
    """CPU per image (the row's process and its workers, start-up included) and the floor's CPU
    over the row's: the work each row costs, which waiting for a core does not stretch as it
    stretches the wall clock. A cross-check for the throughput ratios, not a target of its own."""
    print("\nMedian CPU per image (ms, all of a row's processes) and (a)'s CPU / the row's")
    print(f"{'row':<52}" + "".join(f"{f'{w}w ms':>9}{'(a)/row':>9}" for w in workers))
    for row, title in ROW_TITLES.items():
        if row not in rows or not any((row, w) in cpu_ms for w in workers):
            continue
        cells = []
        for w in workers:
            ms, floor = cpu_ms.get((row, w)), cpu_ms.get(("a", w))
            cells.append(f"{ms:9.2f}" if ms else f"{'n/a':>9}")
            cells.append(f"{floor / ms:9.0%}" if ms and floor else f"{'':>9}")
        print(f"{title:<52}" + "".join(cells))


def _scaling(rate: dict[tuple[str, int], float], row: str, lo: int, hi: int) -> float | None:
    a, b = rate.get((row, hi)), rate.get((row, lo))
    return a / b if a and b else None


def report_kernels(kernels: dict[str, list[float]]) -> None:
    print("\n(k) tf_image kernels vs tf.image on one 224x224 RGB image, single-threaded (median ms per call)")
    print(f"  {'op':<22}{'augexport':>11}{'tf.image':>11}{'ratio':>8}   target <= 1.5x")
    for name, (ours, theirs) in kernels.items():
        ratio = ours / theirs
        print(f"  {name:<22}{ours:11.3f}{theirs:11.3f}{ratio:7.2f}x   {'meets' if ratio <= 1.5 else 'MISSES'}")


def _worker(v: dict[str, Any]) -> str:
    own = v.get("own_worker_kib")
    return f"worker {v['rss_worker_kib'] / 1024:.0f} MiB" + (f" ({own / 1024:.0f} MiB its own)" if own else "")


def report_memory(rss: dict[str, Any], mem_row: str, n_png: int) -> None:
    small, big = rss["png_small"], rss["png"]
    peak = {k: max(v["rss_main_kib"], v["rss_worker_kib"]) / 1024 for k, v in rss.items()}
    growth = peak["png"] / peak["png_small"] - 1
    print(f"\nPeak RSS of ({mem_row}) on 32x32 PNGs, 2 workers: {n_png // 10} images: main {small['rss_main_kib'] / 1024:.0f} MiB,"
          f" {_worker(small)}; {n_png} images: main {big['rss_main_kib'] / 1024:.0f} MiB, "
          f"{_worker(big)} -> {growth:+.1%} ({'meets' if growth <= 0.15 else 'MISSES'} <= +15%)")
    print(f"  ({n_png} PNGs took {big['seconds']:.1f} s: {n_png / big['seconds']:.0f} images/s)")


def report_arrays(rss: dict[str, Any], mem_row: str, n: int) -> None:
    small, big = rss["arrays_small"], rss["arrays"]
    main_growth = big["rss_main_kib"] / small["rss_main_kib"] - 1
    worker_growth = big["rss_worker_kib"] / max(1, small["rss_worker_kib"]) - 1
    print(f"\nPeak RSS of ({mem_row}) from npy:X,Y arrays of 28x28, 2 workers: {n // 10} images: main "
          f"{small['rss_main_kib'] / 1024:.0f} MiB, {_worker(small)}; {n} images: main "
          f"{big['rss_main_kib'] / 1024:.0f} MiB ({main_growth:+.1%}), {_worker(big)} ({worker_growth:+.1%})")
    print(f"  ({n} images took {big['seconds']:.1f} s: {n / big['seconds']:.0f} images/s; peak RSS = VmHWM, the "
          "largest of the pool's processes for the worker; its own: its private pages, the rest it shares with "
          "the main process it was forked from)")

if __name__ == "__main__":
    main()
