"""What runs in a worker process: decode -> per-image stages -> mix -> encode -> framed record.

Never imports TensorFlow or Keras. Everything random comes from the record's own generators.
On the device path (`Job.device`, see device.py) a copy whose last stages run on the device
(offload.device_start) or that is mixed comes back as a `Deferred`: the pixels after its CPU
stages, the params of ALL its stages (the device stages sampled here with the same generator, in
the same order, so the draws are the CPU path's) and its mix steps, whose partners are the
partners' own `Deferred`s. The main process renders and mixes them in batches, then hands the
finished pixels back (`Finished`, `encode_finished`) to be encoded and framed here with the same
`Renderer.build_record`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import allocator, codec
from .errors import DecodeError, SourceUnavailable
from .imgaug_compat import defer_unused_imports
from .mixing import streams
from .offload import device_start
from .pipeline import Pipeline, build_pipeline
from .pixel_share import (
    SharedBytes,
    SharedPixels,
    fetch,
    fetch_bytes,
    owner_for,
    set_owner,
    share,
    share_bytes,
)
from .plan import CopyPlan, make_plan
from .records import Record, example_parts, frame_parts
from .registry import StageFailed, run_stages
from .rng import example_rng
from .sources import DEFAULT_MAX_FILE_BYTES, SourceItem
from .stages.mix import apply_mix, match_size, mixed_label, sample_mix
from .stages.tta import VariantError


@dataclass(frozen=True)
class Job:
    """Everything a worker needs; small and picklable."""

    pipeline_spec: dict[str, Any]
    num_classes: int
    channels: int = 3
    encoding: str = "jpeg"
    quality: int = 95
    max_pixels: int = codec.DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    keep_image: bool = False
    variants: tuple[dict[str, Any], ...] = ()  # TTA: copy k renders variant k (plan.TtaPlan)
    class_names: tuple[str, ...] = ()  # per-class stages (`classes:`) are looked up by name
    device: bool = False  # the device path: device stages and mixing are left to the main process


@dataclass(frozen=True)
class Partner:
    """The partner mix entry `entry` uses for a copy: another image of the block, and which copy."""

    entry: int
    item: SourceItem
    copy: int


@dataclass(frozen=True)
class Unit:
    """One source image and the copies to make of it; `partners[copy]`: its mix entries' partners."""

    item: SourceItem
    copies: tuple[int, ...]
    partners: dict[int, list[Partner]] = field(default_factory=dict)


@dataclass
class MixStep:
    """One mix entry applied to a copy: the partner's augmented copy (at the base's size; on the
    device path the partner's `Deferred`, None once mixed) and the sampled entry recorded in params."""

    partner: np.ndarray | Deferred | None
    entry: dict[str, Any]
    partner_id: str
    partner_label: int


@dataclass(eq=False)
class Deferred:
    """A copy the main process finishes (device path): `pixels` after stages[:start] of its stage
    list, `params` the recorded entries of all its stages (stages[start:end] sampled, not applied),
    and the mix steps to apply after them. `rendered` is set by the main process. Partners are
    shared objects: one pickled task result keeps them shared, so each is rendered once."""

    pixels: np.ndarray  # a SharedPixels while it travels (ship_deferred / land_deferred)
    label: int
    copy: int
    start: int
    end: int
    params: list[dict[str, Any]]
    steps: list[MixStep] = field(default_factory=list)
    rendered: np.ndarray | None = None

    @property
    def on_device(self) -> bool:
        return self.start < self.end


@dataclass
class Finished:
    """A deferred copy's final pixels, back from the main process to be encoded and framed."""

    source_id: str
    label: int
    copy: int
    image: np.ndarray
    params: list[dict[str, Any]]
    steps: list[MixStep]


Rendered = tuple[np.ndarray, list[dict[str, Any]]] | Deferred  # a copy: (image, params), or Deferred


@dataclass
class RecordOut:
    copy: int
    framed: bytes  # a SharedBytes while it travels from a worker (ship_records / land_records)
    label: int
    mixed: bool
    image: bytes | None  # likewise
    pending: Deferred | None = None  # set (and framed empty) until the main process finishes it


@dataclass
class UnitOut:
    source_id: str
    records: list[RecordOut]
    error: str | None = None


class Renderer:
    """Renders units: decode, the copy plan's stages per copy, mixing, encoding, framing."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.pipeline: Pipeline = build_pipeline(job.pipeline_spec)
        self.plan: CopyPlan = make_plan(self.pipeline, job.variants, job.class_names)
        self.decoder = codec.Decoder(job.channels, self.pipeline.image_size, job.max_pixels, self.pipeline.resize)

    def decode(self, item: SourceItem) -> np.ndarray:
        return item.decode(self.decoder, self.job.max_file_bytes)

    def augment(self, source_id: str, label: int, copy: int, pixels: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Copy `copy` of one image: the plan's stages for it, with the (seed, source_id, copy) generator."""
        stages = self.plan.stages(label, copy)
        if not stages:
            return pixels, []
        return run_stages(stages, example_rng(self.plan.seed, source_id, copy), pixels)

    def prepare(self, source_id: str, label: int, copy: int, pixels: np.ndarray) -> Deferred:
        """The device path's part of copy `copy`: its CPU stages applied, then its device stages'
        params drawn from the same generator in the same order (they keep the shape, so each draws
        on the shape the CPU path would give it)."""
        stages = self.plan.stages(label, copy)
        start = device_start(stages)
        rng = example_rng(self.plan.seed, source_id, copy)
        image, params = run_stages(stages[:start], rng, pixels) if start else (pixels, [])
        for i in range(start, len(stages)):
            try:
                drawn = stages[i].draw(rng, image.shape)
            except Exception as exc:  # reported like a failure of the stage on the CPU path
                raise StageFailed(i, stages[i], exc) from exc
            params.append(stages[i].record(drawn))
        return Deferred(image, label, copy, start, len(stages), params)

    def encode_finished(self, items: list[Finished]) -> list[RecordOut]:
        return [self.build_record(f.source_id, f.label, f.copy, f.image, f.params, f.steps) for f in items]

    def process(self, units: list[Unit]) -> list[UnitOut]:
        """Render a task's units. An augmented copy that is another copy's mixing partner in the same
        task is rendered once and reused (the engine sends a block's units in one task when mixing):
        the copies to be mixed wait until every unit of the task is rendered, then are mixed."""
        wanted = {(p.item.source_id, p.copy) for u in units for ps in u.partners.values() for p in ps}
        cache: dict[tuple[str, int], Rendered] = {}
        outs, waiting = [], []
        for unit in units:
            out, pending = self._render(unit, wanted, cache)
            outs.append(out)
            waiting += [(out, unit, *p) for p in pending]
        for out, unit, index, copy, done in waiting:
            out.records[index] = self._finish_copy(unit, copy, done, cache)
        return outs

    def process_unit(self, unit: Unit) -> UnitOut:
        return self.process([unit])[0]

    def _copy(self, item: SourceItem, copy: int, pixels: np.ndarray) -> Rendered:
        """One copy as far as this process takes it: (image, params), or a Deferred (device path)."""
        if self.job.device:
            return self.prepare(item.source_id, item.label, copy, pixels)
        return self.augment(item.source_id, item.label, copy, pixels)

    def _render(self, unit: Unit, wanted: set[tuple[str, int]], cache: dict[tuple[str, int], Rendered]
                ) -> tuple[UnitOut, list[tuple[int, int, Rendered]]]:
        """Decode and augment every copy of one unit; copies without partners are finished at once,
        the others returned as (record index, copy, rendered) to be mixed."""
        item = unit.item
        try:
            pixels, kept = self._decode_unit(unit)
        except DecodeError as exc:
            return UnitOut(item.source_id, [], str(exc)), []
        records: list[RecordOut | None] = []
        pending = []
        for copy in unit.copies:
            try:
                done = self._copy(item, copy, pixels)
            except StageFailed as failed:
                return UnitOut(item.source_id, [], self._failure(failed, copy, pixels)), []
            if (item.source_id, copy) in wanted:
                cache[(item.source_id, copy)] = done
            if unit.partners.get(copy):
                pending.append((len(records), copy, done))
                records.append(None)
            else:
                records.append(self._record(item, copy, done, [], kept))
        return UnitOut(item.source_id, records), pending  # type: ignore[arg-type]

    def _decode_unit(self, unit: Unit) -> tuple[np.ndarray, bytes | None]:
        """The unit's pixels, and the source's JPEG stream where one of its copies is unchanged
        (no stage) and JPEG-encoded: that copy stores the stream (jpeg_stream.py)."""
        item = unit.item
        if self.job.encoding != "jpeg" or all(self.plan.stages(item.label, c) for c in unit.copies):
            pixels, kept = self.decode(item), None
        else:
            pixels, kept = item.decode_keeping(self.decoder, self.job.quality, self.job.max_file_bytes)
        if self.job.encoding == "jpeg" and max(pixels.shape[:2]) > codec.JPEG_MAX_SIDE:
            h, w = pixels.shape[:2]
            raise DecodeError(f"{h}x{w} pixels (HxW): JPEG holds at most {codec.JPEG_MAX_SIDE} pixels a side; "
                              "export with --encoding png, or --image-size")
        return pixels, kept

    def _record(self, item: SourceItem, copy: int, done: Rendered, steps: list[MixStep],
                kept: bytes | None = None) -> RecordOut:
        """The record of a copy mixed by `steps`, or (device path) the copy left to the main process.
        `kept`: the source's own stream, stored for a copy that no stage and no mixing changed."""
        if isinstance(done, Deferred):
            if not done.on_device and not steps:
                stored = kept if not done.params else None
                return self.build_record(item.source_id, item.label, copy, done.pixels, done.params, encoded=stored)
            done.steps = steps
            return RecordOut(copy, b"", item.label, False, None, pending=done)
        image, params = done
        for step in steps:
            image = apply_mix(image, step.partner, step.entry)  # type: ignore[arg-type]
        stored = kept if not params and not steps else None
        return self.build_record(item.source_id, item.label, copy, image, params, steps, encoded=stored)

    @staticmethod
    def _failure(failed: StageFailed, copy: int, pixels: np.ndarray) -> str:
        exc = failed.error
        if isinstance(exc, VariantError):  # e.g. a TTA crop larger than this image: skip the image
            return str(exc)
        h, w, c = pixels.shape
        return (f"copy {copy}: a stage failed on this image ({h}x{w} pixels as HxW, {c} channel(s)): "
                f"{type(exc).__name__}: {exc}")

    def _finish_copy(self, unit: Unit, copy: int, done: Rendered, cache: dict[tuple[str, int], Rendered]) -> RecordOut:
        """Mix the copy with its partners (or leave that to the main process), encode, frame."""
        shape = done.pixels.shape if isinstance(done, Deferred) else done[0].shape
        skipped: list[dict[str, Any]] = []
        steps = self._mix_steps(unit.item.source_id, copy, shape, unit.partners.get(copy, []), cache, skipped)
        if skipped:  # the copy's own params say which mix did not happen, and why
            if isinstance(done, Deferred):
                done.params.extend(skipped)  # its own list: a partner's params are never read
            else:
                done = (done[0], [*done[1], *skipped])
        return self._record(unit.item, copy, done, steps)

    def build_record(self, source_id: str, label: int, copy: int, image: np.ndarray, params: list[dict[str, Any]],
                     steps: list[MixStep] = (), encoded: bytes | None = None) -> RecordOut:  # type: ignore[assignment]
        """Encode and frame one record; `image` is already mixed by `steps`; `encoded`: its bytes
        when they are already known (an unchanged original's own JPEG stream). Shared by the worker
        and the main-process batch stage, so both write the same record. An empty CutMix box
        pastes nothing (lambda 1): that step does not count as mixing, and names its partner in its
        params entry, since mix_source_id names that of the first step that mixed."""
        first = next((s for s in steps if s.entry["lambda"] < 1.0), None)
        params = [*params, *(s.entry if s is first else {**s.entry, "partner_source_id": s.partner_id}
                             for s in steps)]
        mixing = [(s.partner_label, s.entry["lambda"]) for s in steps if s.entry["lambda"] < 1.0]
        if encoded is None:
            encoded = codec.encode(image, self.job.encoding, self.job.quality)
        record = Record(
            image=encoded,
            label=label,
            soft_label=mixed_label(label, self.job.num_classes, self.pipeline.label_smoothing, mixing),
            source_id=source_id,
            copy=copy,
            variant=self.plan.variant(copy),
            mix_source_id=first.partner_id if first else "",
            mix_lambda=first.entry["lambda"] if first else 1.0,
            params=params,
        )
        return RecordOut(copy, frame_parts(example_parts(record.features())), label, first is not None,
                         encoded if self.job.keep_image else None)

    def _mix_steps(self, source_id: str, copy: int, shape: tuple[int, ...], partners: list[Partner],
                   cache: dict[tuple[str, int], Rendered], skipped: list[dict[str, Any]]) -> list[MixStep]:
        """Each partner's own augmented copy (from this task, or recomputed: the same bytes either
        way) and the sampled entry; a partner that cannot be rendered is left out (no mixing), noted
        in `skipped`."""
        mix = self.pipeline.mix
        steps = []
        for partner in partners:
            try:
                done = cache.get((partner.item.source_id, partner.copy))
                if done is None:
                    done = self._copy(partner.item, partner.copy, self.decode(partner.item))
            except SourceUnavailable:  # the store is down: fail the run rather than leave the copy unmixed
                raise
            except Exception as exc:  # unreadable, or a stage fails on it: the partner is skipped on its own
                skipped.append({"stage": "mix", "skipped": f"the partner could not be rendered: {str(exc)[:200]}",
                                "partner_source_id": partner.item.source_id, "partner_copy": partner.copy})
                continue
            assert mix is not None
            entry = mix.entries[partner.entry]
            rng = example_rng(self.pipeline.seed, source_id, copy, streams(partner.entry)[1])
            drawn = sample_mix(rng, entry.draw_method(rng), entry.alpha, shape[0], shape[1])
            recorded = {"stage": "mix", **drawn, "partner_copy": partner.copy}
            # the device path resizes the partner once the main process has rendered it
            image = done if isinstance(done, Deferred) else match_size(done[0], shape)
            steps.append(MixStep(image, recorded, partner.item.source_id, partner.item.label))
        return steps


_RENDERER: Renderer | None = None


def _die_with_parent(parent: int) -> None:
    """A worker must not outlive the main process (killed by the OOM killer or `kill -9`): on Linux
    the kernel sends it SIGKILL when the parent dies; elsewhere a thread watches the parent's pid."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="augexport-parent-watch").start()
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _default_signal_handlers() -> None:
    """Python-level handlers (callables) back to the default action; ignored signals stay ignored."""
    for signum in signal.valid_signals():
        try:
            if callable(signal.getsignal(signum)):
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):  # signals no handler may be set for
            pass


def init_worker(job: Job, parent: int, threads: int, owner: str | None = None) -> None:
    """Worker start-up. Ctrl-C (SIGINT to the whole process group) is the main process's to handle:
    it stops the workers itself, so no worker prints a KeyboardInterrupt traceback of its own.
    Every other signal takes its default action, as in a spawned worker: a forked one would
    otherwise keep the main process's Python handlers (the CLI's SIGTERM handler raises inside
    the task; the pool starts workers with SIGTERM held back until it is reset here).
    OpenCV gets `threads` threads: the cores shared out between the workers (its default, one
    thread per core in every worker, makes the workers fight over the cores). imgaug's start-up
    imports that image augmentation never calls are put off (`imgaug_compat.DEFERRED`)."""
    global _RENDERER
    _default_signal_handlers()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    _die_with_parent(parent)
    set_owner(owner or owner_for(parent))  # shared-memory segments are tagged with the export's run
    allocator.tune()
    limit_opencv_threads(threads)
    defer_unused_imports()
    _RENDERER = Renderer(job)


def limit_opencv_threads(threads: int) -> None:
    """Give OpenCV `threads` threads without importing it (~0.1 s of every worker's start-up, and
    an export of plain JPEG originals never needs it): OpenCV reads OPENCV_FOR_THREADS_NUM when it
    loads. Where it is already loaded, set it directly."""
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(threads)
    else:
        os.environ["OPENCV_FOR_THREADS_NUM"] = str(threads)


def run_units(units: list[Unit]) -> list[UnitOut]:
    assert _RENDERER is not None, "init_worker was not called"
    outs = _RENDERER.process(units)
    return ship_records(ship_deferred(outs) if _RENDERER.job.device else outs)


def run_encodes(items: list[Finished]) -> list[RecordOut]:
    """The device path's second task kind: encode and frame copies the main process finished."""
    assert _RENDERER is not None, "init_worker was not called"
    return _RENDERER.encode_finished(land_finished(items))


# -- the device path's pixels between processes (pixel_share) -------------------------------------
def _deferred(outs: list[UnitOut]) -> list[Deferred]:
    """Every Deferred of a task result, partners included, once each."""
    found: dict[int, Deferred] = {}
    for out in outs:
        for rec in out.records:
            if rec.pending is not None:
                found[id(rec.pending)] = rec.pending
                for step in rec.pending.steps:
                    if isinstance(step.partner, Deferred):
                        found[id(step.partner)] = step.partner
    return list(found.values())


def ship_deferred(outs: list[UnitOut]) -> list[UnitOut]:
    """Worker side: the task's deferred pixels into one shared segment (references in their place)."""
    todo = [d for d in _deferred(outs) if isinstance(d.pixels, np.ndarray)]
    for d, ref in zip(todo, share([d.pixels for d in todo]), strict=True):
        d.pixels = ref  # type: ignore[assignment]
    return outs


def land_deferred(outs: list[UnitOut]) -> list[UnitOut]:
    """Main side: the pixels behind a task result's references (the segment is unlinked)."""
    todo = [d for d in _deferred(outs) if isinstance(d.pixels, SharedPixels)]
    for d, array in zip(todo, fetch([d.pixels for d in todo]), strict=True):
        d.pixels = array
    return outs


def _blobs(outs: list[UnitOut]) -> list[tuple[RecordOut, str]]:
    """(record, field) of every encoded record and kept image in a task result."""
    recs = [r for out in outs for r in out.records if r.pending is None]
    return [(r, "framed") for r in recs] + [(r, "image") for r in recs if r.image is not None]


def ship_records(outs: list[UnitOut]) -> list[UnitOut]:
    """Worker side: a task's framed records (and kept image files) into one shared segment: the
    main process then copies each record once instead of receiving it through the pipe."""
    todo = _blobs(outs)
    for (rec, key), ref in zip(todo, share_bytes([getattr(r, k) for r, k in todo]), strict=True):
        setattr(rec, key, ref)
    return outs


def land_records(outs: list[UnitOut]) -> list[UnitOut]:
    """Main side: the bytes behind a task result's references (the segment is unlinked)."""
    todo = [(r, k) for r, k in _blobs(outs) if isinstance(getattr(r, k), SharedBytes)]
    for (rec, key), blob in zip(todo, fetch_bytes([getattr(r, k) for r, k in todo]), strict=True):
        setattr(rec, key, blob)
    return outs


def land_result(outs: list[UnitOut]) -> list[UnitOut]:
    """Main side: everything a `run_units` result carries in shared memory."""
    return land_records(land_deferred(outs))


def ship_finished(items: list[Finished], owner: str | None = None) -> list[Finished]:
    """Main side: an encode task's finished pixels into one shared segment tagged `owner`."""
    refs = share([f.image for f in items], owner)
    return [Finished(f.source_id, f.label, f.copy, ref, f.params, f.steps) for f, ref in zip(items, refs, strict=True)]  # type: ignore[arg-type]


def land_finished(items: list[Finished]) -> list[Finished]:
    for f, array in zip(items, fetch([f.image for f in items]), strict=True):
        f.image = array
    return items
