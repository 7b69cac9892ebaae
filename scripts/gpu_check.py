"""One-command device check: the same export on `--device cpu` and `--device gpu`, the stated
tolerance between them, and the images/s of both with their ratio.

    python scripts/gpu_check.py                      # from the repository root; under 5 minutes
    python scripts/gpu_check.py --images 400 --size 160 --backend torch

It generates its own images (photo-like noise with hard-edged boxes, JPEG, 3 classes; nothing
is downloaded), exports them with a heavy device-capable pipeline (keras warp + brightness,
tf_image hue/saturation/contrast/flip, CutMix then MixUp), and:

1. tolerance: a small PNG export (lossless) on both paths; every record must have the same
   params, labels and soft labels, and the pixels must be within the device path's tolerance
   (augexport.device: no pixel more than 2 levels apart, >= 99.9% identical);
2. speed (only where the backend sees a GPU, or with --force-cpu-device): a warm-up device export
   (imports and jax's compiles), then the full JPEG export once per path, timed; prints images/s
   of both, their ratio, the main process's device seconds and how many records came out
   byte-identical.

Without a GPU it says so, runs step 1 with the device path on the backend's CPU
(AUGEXPORT_DEVICE_ON_CPU) and the CPU path's export for its images/s, and exits 0. Exit 1 when the
tolerance is not met or an export fails.

The Keras backend: --backend, else KERAS_BACKEND, else the first of jax, torch, tensorflow that is
installed. augexport runs from this source tree (no install); it needs numpy, pillow,
opencv-python-headless, simplejpeg, google-crc32c, and for the device path keras with its
dependencies (absl-py, h5py, ml-dtypes, namex, optree, packaging, rich, typing-extensions).

On a machine that has PyTorch or JAX (and numpy, pillow, opencv, absl-py, h5py, ml-dtypes,
packaging, rich) but no network, carry these five wheels (3.3 MB; Python 3.12, x86-64):

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 -d .whl \\
        keras==3.15.1 namex==0.1.0 optree==0.20.0 simplejpeg==1.9.0 google-crc32c==1.9.0

and there:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD KERAS_BACKEND=torch python3 scripts/gpu_check.py     # or jax
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STAGES = [
    {"keras": {"rotation_range": 20, "width_shift_range": 0.1, "height_shift_range": 0.1, "shear_range": 5,
               "zoom_range": 0.15, "horizontal_flip": True, "fill_mode": "reflect", "brightness_range": [0.8, 1.2]}},
    {"tf_image": [{"random_hue": {"max_delta": 0.05}}, {"random_saturation": {"lower": 0.7, "upper": 1.3}},
                  {"random_contrast": {"lower": 0.8, "upper": 1.2, "p": 0.5}}, {"random_flip_up_down": {"p": 0.2}}]},
]
MIX = [{"method": "cutmix", "alpha": 1.0, "p": 0.5}, {"method": "mixup", "alpha": 0.4, "p": 0.3}]


def pick_backend(asked: str | None) -> str:
    if asked or os.environ.get("KERAS_BACKEND"):
        return asked or os.environ["KERAS_BACKEND"]
    for name in ("jax", "torch", "tensorflow"):
        if importlib.util.find_spec(name) is not None:
            return name
    return "tensorflow"


def make_images(root: Path, n: int, size: int) -> Path:
    """n JPEGs of size x size in 3 class folders: smooth noise with a white and a black box."""
    import cv2
    import numpy as np

    g = np.random.default_rng(0)
    for i in range(n):
        coarse = g.integers(0, 256, (size // 8 + 1, size // 8 + 1, 3)).astype(np.uint8)
        im = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
        a, b = sorted(g.integers(0, size, 2))
        im[a:b, a // 2:b] = 255
        im[b // 2:b, a:(a + b) // 2] = 0
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"img{i:05d}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return root


def export(src: Path, out: Path, device: str, args: argparse.Namespace, *, encoding: str = "jpeg",
           limit: int | None = None) -> dict[str, Any]:
    from augexport import api

    overrides = {"seed": 1, "copies": args.copies, "image_size": [args.size, args.size], "stages": STAGES, "mix": MIX}
    source = src
    if limit is not None:  # the first `limit` images, as their own source folder
        source = out.parent / f"{out.name}-src"
        for f in sorted(src.rglob("*.jpg"))[:limit]:
            (source / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, source / f.parent.name / f.name)
    t0 = time.perf_counter()
    result = api.export(str(source), out, overrides=overrides, device=device, workers=args.workers, encoding=encoding,
                        overwrite=True)
    seconds = time.perf_counter() - t0
    timings = json.loads((out / "augexport.json").read_text())["splits"]["train"]["timings"]
    return {"result": result, "seconds": seconds, "images_per_s": result.sources / seconds, "timings": timings}


def compare(a: Path, b: Path, pixels: bool = True) -> dict[str, Any]:
    """Records of two exports of the same source: params, labels, soft labels equal; pixel stats."""
    import numpy as np

    from augexport.codec import decode
    from augexport.device import pixel_stats
    from augexport.outdir import OutDir
    from augexport.reader import load_split, split_examples

    def records(out: Path) -> list[dict[str, Any]]:
        outdir = OutDir(out)
        return list(split_examples(outdir, load_split(outdir, "train")[1]))

    ra, rb = records(a), records(b)
    same_meta = len(ra) == len(rb) and all(
        all(np.array_equal(np.asarray(x[k]), np.asarray(y[k])) for k in x if k != "image") for x, y in zip(ra, rb, strict=True))
    identical = sum(x["image"][0] == y["image"][0] for x, y in zip(ra, rb, strict=True))
    if not pixels:
        return {"records": len(ra), "same_params_and_labels": same_meta, "identical_images": identical}
    stats = pixel_stats(np.concatenate([decode(x["image"][0]).ravel() for x in ra] or [np.zeros(0)]),
                        np.concatenate([decode(y["image"][0]).ravel() for y in rb] or [np.zeros(0)]))
    return {"records": len(ra), "same_params_and_labels": same_meta, "identical_images": identical, **stats}


def describe_machine(backend: str, gpus: list[str]) -> None:
    import numpy

    print(f"python {platform.python_version()}, numpy {numpy.__version__}, {os.cpu_count()} CPU cores")
    try:
        import keras

        print(f"keras {keras.__version__}, backend {keras.backend.backend()}, "
              f"{backend} {importlib.import_module(backend).__version__}")
    except ImportError as exc:
        print(f"keras: not importable ({exc}); the device path cannot run")
    print(f"GPUs the {backend} backend sees: {', '.join(gpus) if gpus else 'none'}")


def tolerance_step(src: Path, work: Path, args: argparse.Namespace, on_gpu: bool) -> bool:
    n = min(args.images, 48)
    export(src, work / "tol-cpu", "cpu", args, encoding="png", limit=n)
    dev = export(src, work / "tol-dev", "gpu", args, encoding="png", limit=n)
    got = compare(work / "tol-cpu", work / "tol-dev")
    where = "GPU" if on_gpu else "the backend's CPU device (no GPU)"
    print(f"\n1. tolerance, device path on {where}: {n} images, {got['records']} records (PNG), "
          f"path: {dev['result'].path}")
    print(f"   params/labels/soft labels equal: {got['same_params_and_labels']}; images byte-identical: "
          f"{got['identical_images']}/{got['records']}; pixels: {got['differing']} of {got['pixels']} differ, "
          f"by at most {got['max_levels']} levels ({100 * got['same']:.4f}% identical) -> {'within' if got['within'] else 'OUTSIDE'} the tolerance")
    return bool(got["within"] and got["same_params_and_labels"])


def speed_step(src: Path, work: Path, args: argparse.Namespace, on_device: bool) -> None:
    if on_device:
        export(src, work / "warm", "gpu", args, limit=min(args.images, 128))  # imports, compiles
    cpu = export(src, work / "cpu", "cpu", args)
    print(f"\n2. speed: {args.images} images of {args.size}x{args.size}, {args.copies} copies, "
          f"{args.workers or 'all'} workers, JPEG")
    print(f"   --device cpu: {cpu['images_per_s']:8.1f} images/s ({cpu['seconds']:.1f} s; path: {cpu['result'].path})")
    if not on_device:
        print("   --device gpu: not run (no GPU)")
        return
    dev = export(src, work / "dev", "gpu", args)
    same = compare(work / "cpu", work / "dev", pixels=False)
    print(f"   --device gpu: {dev['images_per_s']:8.1f} images/s ({dev['seconds']:.1f} s; path: {dev['result'].path}; "
          f"main process on the device: {dev['timings'].get('device_seconds', 0):.1f} s)")
    print(f"   ratio gpu/cpu: {dev['images_per_s'] / cpu['images_per_s']:.2f}x; records byte-identical: "
          f"{same['identical_images']}/{same['records']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="source images (default 2000)")
    parser.add_argument("--size", type=int, default=224, help="image_size, square (default 224)")
    parser.add_argument("--copies", type=int, default=4, help="augmented copies per image (default 4)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    parser.add_argument("--backend", choices=("jax", "torch", "tensorflow"), help="Keras backend (default: see above)")
    parser.add_argument("--force-cpu-device", action="store_true",
                        help="run the device path on the backend's CPU even without a GPU (checks the script)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    backend = pick_backend(args.backend)
    os.environ["KERAS_BACKEND"] = backend  # read when Keras is first imported
    sys.path.insert(0, str(ROOT))
    from augexport import device

    gpus = device.backend_gpus(backend) if importlib.util.find_spec(backend) else []
    describe_machine(backend, gpus)
    from augexport.offload import offload
    from augexport.options import default_workers
    from augexport.pipeline import build_pipeline

    workers = args.workers or default_workers()
    pipeline = build_pipeline({"stages": STAGES, "mix": MIX, "image_size": [args.size, args.size]})
    auto = device.resolve("auto", offload([pipeline.stages], True, pipeline.image_size), workers)
    print(f"--device auto would take: {auto.describe()} (with {workers} workers)")
    if not gpus:
        print(f"no GPU: the Keras backend {backend!r} sees none on this machine; the device path is checked on "
              "its CPU device" + (" (--force-cpu-device: speed too)" if args.force_cpu_device else ""))
    os.environ[device.FORCE_ENV] = "1"  # where there is no GPU, the device path runs on the backend's CPU
    work = args.keep or Path(tempfile.mkdtemp(prefix="gpu_check-"))
    try:
        t0 = time.perf_counter()
        src = make_images(work / "src", args.images, args.size)
        print(f"made {args.images} source images in {time.perf_counter() - t0:.1f} s under {work}")
        ok = tolerance_step(src, work, args, bool(gpus))
        speed_step(src, work, args, bool(gpus) or args.force_cpu_device)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\nOK" if ok else "\nFAILED: the device path is outside its tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
