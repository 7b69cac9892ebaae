"""`--device auto|cpu|gpu`: where the batch stage (mixing) runs.

`cpu` mixes in numpy inside the worker processes. `gpu` (and `auto` when TensorFlow sees a GPU)
leaves mixing to the main process: workers return the augmented base, the partner's augmented copy
and the sampled mix params (`worker.PendingMix`), and the main process mixes a block's pending
copies as batched TensorFlow ops (`stages.mix_tf.mix_batch_tf`) while the workers render the next
blocks, then encodes and frames them with the worker's own `Renderer.build_record`. The params are
sampled in the worker either way, so records, labels and params are the same on both paths.

`auto` looks for NVIDIA device files or `nvidia-smi` before importing TensorFlow, so a CPU-only
export never pays for the import. AUGEXPORT_FORCE_TF_MIX=1 (tests) runs the TF path on the CPU
device for `gpu`/`auto`; `cpu` always stays numpy.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UsageError
from .options import DEVICES
from .stages.mix_tf import FORCE_ENV
from .worker import Job, PendingMix, Renderer, UnitOut

CHUNK = 32  # copies per TensorFlow call: bounds the device memory of one batch


@dataclass(frozen=True)
class BatchDevice:
    """The resolved device: `tf_device` is None for numpy in the workers, else e.g. "/GPU:0"."""

    requested: str
    tf_device: str | None
    has_batch_stage: bool = True

    def describe(self) -> str:
        if not self.has_batch_stage:
            return "none"
        return f"TensorFlow on {self.tf_device}" if self.tf_device else "numpy in workers"


def _forced() -> bool:
    return os.environ.get(FORCE_ENV, "") not in ("", "0")


def gpu_hint() -> bool:
    """Cheap test for a possible GPU, without importing TensorFlow."""
    return bool(glob.glob("/dev/nvidia[0-9]*")) or shutil.which("nvidia-smi") is not None


def tf_gpus() -> list[Any]:
    """GPUs TensorFlow sees (imports TensorFlow); memory growth on, so mixing does not grab the whole card."""
    from .quiet import quiet_stderr

    with quiet_stderr():  # TF's C++ start-up lines are not the user's business (quiet.py)
        import tensorflow as tf  # only for the TF batch stage

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except (RuntimeError, ValueError):  # already initialized: keep TF's setting
            pass
    return gpus


def resolve(device: str, has_batch_stage: bool) -> BatchDevice:
    """Pick the batch-stage device; `gpu` with no GPU visible is a UsageError (exit 2) unless forced."""
    if device not in DEVICES:
        raise UsageError(f"--device {device!r} is not accepted; accepted: {', '.join(DEVICES)}")
    forced = _forced() and device != "cpu"
    if device == "cpu":
        return BatchDevice(device, None, has_batch_stage)
    if device == "auto" and not forced and (not has_batch_stage or not gpu_hint()):
        return BatchDevice(device, None, has_batch_stage)  # no TensorFlow import
    if importlib.util.find_spec("tensorflow") is None:
        if device == "gpu":
            raise UsageError("--device gpu needs TensorFlow, which is not installed: pip install tensorflow "
                             "(with GPU support), or use --device cpu")
        return BatchDevice(device, None, has_batch_stage)
    gpus = tf_gpus()
    if gpus:
        return BatchDevice(device, "/GPU:0", has_batch_stage)
    if forced:
        return BatchDevice(device, "/CPU:0", has_batch_stage)
    if device == "gpu":
        raise UsageError("--device gpu: TensorFlow sees no GPU on this machine (tf.config.list_physical_devices"
                         "('GPU') is empty); use --device cpu or --device auto")
    return BatchDevice(device, None, has_batch_stage)


class MainMixer:
    """Mixes the pending copies of one finished block in the main process and builds their records."""

    def __init__(self, job: Job, tf_device: str) -> None:
        self.renderer = Renderer(job)
        self.tf_device = tf_device
        self.seconds = 0.0
        self.mixed = 0

    def __call__(self, results: list[UnitOut]) -> None:
        t0 = time.perf_counter()
        pending = [(res, k, rec.pending) for res in results for k, rec in enumerate(res.records)
                   if rec.pending is not None]
        by_shape: dict[tuple[int, ...], list[tuple[UnitOut, int, PendingMix]]] = {}
        for res, k, mix in pending:
            by_shape.setdefault(mix.base.shape, []).append((res, k, mix))
        for group in by_shape.values():
            for lo in range(0, len(group), CHUNK):
                chunk = group[lo : lo + CHUNK]
                images = self._mix([m for _, _, m in chunk])
                for (res, k, mix), image in zip(chunk, images, strict=True):
                    rec = res.records[k]
                    res.records[k] = self.renderer.build_record(res.source_id, rec.label, rec.copy, image,
                                                                mix.params, mix.steps)
        self.mixed += len(pending)
        self.seconds += time.perf_counter() - t0

    def _mix(self, mixes: list[PendingMix]) -> list[np.ndarray]:
        """Apply every copy's mix steps in order, step s of all copies that have one as one batch."""
        import tensorflow as tf  # main process only

        from .stages.mix_tf import mix_batch_tf

        images = [m.base for m in mixes]
        for s in range(max(len(m.steps) for m in mixes)):
            todo = [i for i, m in enumerate(mixes) if len(m.steps) > s]
            with tf.device(self.tf_device):
                out = mix_batch_tf([images[i] for i in todo], [mixes[i].steps[s].partner for i in todo],
                                   [mixes[i].steps[s].entry for i in todo])
            for i, image in zip(todo, out, strict=True):
                images[i] = image
        return images


def block_finisher(job: Job, batch: BatchDevice) -> Callable[[list[UnitOut]], None] | None:
    """The engine hook for `batch`: None when the workers mix (numpy)."""
    if batch.tf_device is None or not batch.has_batch_stage:
        return None
    return MainMixer(job, batch.tf_device)
