"""`--device auto|cpu|gpu`: the CPU path, or the device path in `keras.ops` on the Keras backend.

CPU path: everything in the worker processes (numpy/OpenCV). Device path: the longest
device-capable suffix of each copy's stages (offload.py: a keras warp of order 0/1, tf_image
colour ops and flips) and all mixing run in the main process as batched `keras.ops` kernels
(device_ops.py) on the active Keras backend (KERAS_BACKEND: tensorflow by default, jax or torch),
on its GPU. The workers decode, run the CPU stages, sample the device stages' params with the
record's own generator (the CPU path's draws) and send pixels + params (`worker.Deferred`); as
each block completes, `DeviceFinisher` renders its copies grouped by stage list and shape, in
chunks, mixes them with the block's rendered partners, and the engine hands the pixels back to
the workers to encode and frame (`worker.run_encodes`) while they go on with the next blocks.

Selection: `gpu` needs a GPU the backend sees (else exit 2, naming the backend). `auto` takes the
device path only when it is expected to be faster (`Offload.worth_it`: a heavy kernel, images of
at least 96x96, at most 8 workers) and the backend sees a GPU; it looks for GPU device files first, so a CPU-only
machine imports neither Keras nor a backend. The backend's own check decides: jax.devices("gpu"),
torch.cuda.is_available(), tf.config.list_physical_devices("GPU") (TensorFlow only when it is the
backend). AUGEXPORT_DEVICE_ON_CPU=1 (tests, scripts/gpu_check.py) runs the device path on the
backend's CPU where it sees no GPU, for `gpu` and for `auto` (whose rule still applies).
"""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .offload import Offload
from .options import DEVICES
from .registry import Stage
from .worker import Deferred, Finished, Job, Renderer, UnitOut

FORCE_ENV = "AUGEXPORT_DEVICE_ON_CPU"
#: the device path's promise against the CPU path: no pixel more than TOLERANCE_LEVELS apart and
#: at least TOLERANCE_SAME of them identical (measured: identical, docs/performance.md)
TOLERANCE_LEVELS = 2
TOLERANCE_SAME = 0.999
PIXELS_PER_CALL = 1 << 23  # pixels of one device batch (~32 copies of 512x512): bounds device memory
MAX_CALL = 64  # copies per device batch
_PACKAGES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def _forced() -> bool:
    return os.environ.get(FORCE_ENV, "") not in ("", "0")


def gpu_hint() -> bool:
    """Cheap test for a possible GPU (NVIDIA or ROCm device files, nvidia-smi), importing nothing."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd")) or shutil.which("nvidia-smi") is not None


def keras_backend() -> str:
    """The backend Keras will load, found as Keras finds it (KERAS_BACKEND, else keras.json in
    KERAS_HOME or ~/.keras, else tensorflow) without importing Keras."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    config = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "keras.json"
    try:
        return str(json.loads(config.read_text()).get("backend") or "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def tf_gpus() -> list[Any]:
    """GPUs TensorFlow sees (imports TensorFlow); memory growth on, so it does not grab the whole card."""
    from .quiet import quiet_stderr

    with quiet_stderr():  # TF's C++ start-up lines are not the user's business (quiet.py)
        import tensorflow as tf  # only when TensorFlow is the Keras backend

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialized: keep TF's setting
            pass
    return gpus


def backend_gpus(backend: str) -> list[str]:
    """The accelerators `backend` sees, by its own check (imports the backend, not Keras)."""
    if backend == "jax":
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # take GPU memory as needed
        import jax

        try:
            return [str(d) for d in jax.devices("gpu")]
        except RuntimeError:  # no GPU platform in this jaxlib, or none found
            return []
    if backend == "torch":
        import torch

        if torch.cuda.is_available():
            return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        return ["mps"] if torch.backends.mps.is_available() else []
    if backend == "tensorflow":
        return [f"/GPU:{i}" for i in range(len(tf_gpus()))]
    return []  # numpy, openvino: CPU only


@dataclass(frozen=True)
class DevicePath:
    """The resolved path: `backend` is None for the CPU path."""

    requested: str
    backend: str | None = None
    accelerator: str | None = None
    work: Offload = field(default_factory=Offload)

    @property
    def on_device(self) -> bool:
        return self.backend is not None

    def timings(self) -> dict[str, Any]:
        """What the manifest records: the flag, the path, and for the device path where it ran."""
        if not self.on_device:
            return {"device": self.requested, "path": "cpu"}
        return {"device": self.requested, "path": "device", "keras_backend": self.backend,
                "accelerator": self.accelerator, "device_stages": self.work.names()}

    def describe(self) -> str:
        return describe(self.timings())


def describe(timings: dict[str, Any]) -> str:
    """The summary line's words for a manifest's timings: `cpu` or `device (keras, mix on jax cuda:0)`."""
    if timings.get("path") != "device":
        return "cpu"
    return f"device ({', '.join(timings.get('device_stages') or [])} on {timings.get('keras_backend')} " \
           f"{timings.get('accelerator')})"


def pixel_stats(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """How two renderings of the same copies differ: pixels, largest difference, share identical,
    and whether that is within the device path's tolerance."""
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
    same = float(np.mean(diff == 0)) if diff.size else 1.0
    worst = int(diff.max()) if diff.size else 0
    return {"pixels": int(diff.size), "differing": int(np.count_nonzero(diff)), "max_levels": worst, "same": same,
            "within": worst <= TOLERANCE_LEVELS and same >= TOLERANCE_SAME}


def _missing(backend: str) -> str | None:
    """What is not installed for the device path on `backend`, or None."""
    need = ["keras"] + ([_PACKAGES[backend]] if backend in _PACKAGES else [])
    absent = [name for name in need if importlib.util.find_spec(name) is None]
    return " and ".join(absent) or None


def resolve(device: str, work: Offload, workers: int = 1) -> DevicePath:
    """Pick the path; `gpu` with no GPU the backend sees is a UsageError (exit 2) unless forced."""
    if device not in DEVICES:
        raise UsageError(f"--device {device!r} is not accepted; accepted: {', '.join(DEVICES)}")
    forced = _forced()
    cpu = DevicePath(device, work=work)
    if device == "cpu" or (device == "auto" and (not work.worth_it(workers) or not (forced or gpu_hint()))):
        return cpu  # nothing imported
    backend = keras_backend()
    missing = _missing(backend)
    if missing:
        if device == "gpu":
            raise UsageError(f"--device gpu runs keras.ops on the Keras backend {backend!r} (KERAS_BACKEND), which "
                             f"needs {missing}: not installed (pip install {missing.replace(' and ', ' ')}); "
                             "or use --device cpu")
        return cpu
    gpus = backend_gpus(backend)
    if not gpus and not forced:
        if device == "gpu":
            raise UsageError(f"--device gpu: the Keras backend {backend!r} sees no GPU on this machine; use "
                             "--device cpu or --device auto (or set KERAS_BACKEND to a backend that sees one)")
        return cpu
    if not work.any:
        return cpu  # nothing in this pipeline runs on a device
    return DevicePath(device, backend, gpus[0] if gpus else f"cpu ({FORCE_ENV})", work)


class DeviceFinisher:
    """Renders and mixes one finished block's deferred copies on the device (the engine's
    `finish_block`); returns (unit index, record index, finished pixels) for the workers to encode."""

    def __init__(self, job: Job) -> None:
        from . import device_ops  # imports Keras: the main process of a device-path run only

        self.ops = device_ops
        self.plan = Renderer(job).plan
        self.seconds = 0.0
        self.copies = 0

    def __call__(self, results: list[UnitOut]) -> list[tuple[int, int, Finished]]:
        t0 = time.perf_counter()
        slots = [(i, k, rec.pending) for i, res in enumerate(results) for k, rec in enumerate(res.records)
                 if rec.pending is not None]
        if not slots:
            return []
        todo: dict[int, Deferred] = {}
        for _, _, d in slots:
            todo[id(d)] = d
            for step in d.steps:
                assert isinstance(step.partner, Deferred)
                todo[id(step.partner)] = step.partner
        self._render(list(todo.values()))
        images = self._mix([d for _, _, d in slots])
        out = [(i, k, Finished(results[i].source_id, d.label, d.copy, image, d.params,
                               [replace(s, partner=None) for s in d.steps]))
               for (i, k, d), image in zip(slots, images, strict=True)]
        self.copies += len(slots)
        self.seconds += time.perf_counter() - t0
        return out

    def _render(self, deferred: list[Deferred]) -> None:
        """Each copy's device stages, as batches of one stage list, first device stage and shape."""
        groups: dict[tuple[int, int, tuple[int, ...]], tuple[Sequence[Stage], list[Deferred]]] = {}
        for d in deferred:
            if not d.on_device:
                d.rendered = d.pixels
                continue
            stages = self.plan.stages(d.label, d.copy)
            groups.setdefault((id(stages), d.start, d.pixels.shape), (stages, []))[1].append(d)
        for (_, start, shape), (stages, group) in groups.items():
            for chunk, real in _chunks(group, shape):
                batch = self.ops.to_device([d.pixels for d in chunk])
                for j in range(start, chunk[0].end):
                    batch = self.ops.apply_stage(stages[j], batch, [d.params[j]["params"] for d in chunk])
                for d, image in zip(chunk[:real], self.ops.to_host(batch)[:real], strict=True):
                    d.rendered = image

    def _mix(self, deferred: list[Deferred]) -> list[np.ndarray]:
        """Every copy's mix steps in order: step s of all copies that have one, batched by shape."""
        images = [d.rendered for d in deferred]
        for s in range(max(len(d.steps) for d in deferred)):
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, d in enumerate(deferred):
                if len(d.steps) > s:
                    by_shape.setdefault(images[i].shape, []).append(i)  # type: ignore[union-attr]
            for shape, todo in by_shape.items():
                for chunk, real in _chunks(todo, shape):
                    steps = [deferred[i].steps[s] for i in chunk]
                    mixed = self.ops.mix_arrays([images[i] for i in chunk],
                                                [st.partner.rendered for st in steps],  # type: ignore[union-attr]
                                                [st.entry for st in steps])
                    for i, image in zip(chunk[:real], mixed[:real], strict=True):
                        images[i] = image
        return images  # type: ignore[return-value]


def _chunks(items: list[Any], shape: tuple[int, ...]) -> list[tuple[list[Any], int]]:
    """Device batches of `items`, each as (batch, how many are real): a power of two of copies
    within PIXELS_PER_CALL, the last one padded with its own last item. So one shape makes at most
    a handful of batch sizes, and jax compiles its ops for those only."""
    fit = max(1, min(MAX_CALL, PIXELS_PER_CALL // max(1, shape[0] * shape[1])))
    size = 1 << (fit.bit_length() - 1)
    out = []
    for lo in range(0, len(items), size):
        chunk = items[lo:lo + size]
        padded = 1 << (len(chunk) - 1).bit_length()
        out.append((chunk + [chunk[-1]] * (padded - len(chunk)), len(chunk)))
    return out


def block_finisher(job: Job, path: DevicePath) -> DeviceFinisher | None:
    """The engine hook for `path`: None on the CPU path."""
    return DeviceFinisher(job) if path.on_device else None
