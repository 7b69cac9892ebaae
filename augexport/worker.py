"""What runs in a worker process: decode -> per-image stages -> mix -> encode -> framed record.

Never imports TensorFlow. Everything random comes from the record's own generators. With
`Job.defer_mix` (a TensorFlow batch stage in the main process, see device.py) a copy to be mixed
comes back as a `PendingMix` (base, partner, sampled params) and the main process mixes it and
builds the record with the same `Renderer.build_record`.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import codec
from .errors import DecodeError, SourceUnavailable
from .mixing import streams
from .pipeline import Pipeline, build_pipeline
from .plan import CopyPlan, make_plan
from .records import Record, encode_example, frame
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
    defer_mix: bool = False  # leave mixing (and encoding the mixed copies) to the main process


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
    """One mix entry applied to a copy: the partner's augmented copy (at the base's size) and the
    sampled entry recorded in params."""

    partner: np.ndarray
    entry: dict[str, Any]
    partner_id: str
    partner_label: int


@dataclass
class PendingMix:
    """A copy whose mixing is left to the main process: the augmented base, the stage params so
    far and the mix steps to apply in order."""

    base: np.ndarray
    params: list[dict[str, Any]]
    steps: list[MixStep]


@dataclass
class RecordOut:
    copy: int
    framed: bytes
    label: int
    mixed: bool
    image: bytes | None
    pending: PendingMix | None = None  # set (and framed empty) until the main process mixes it


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

    def process(self, units: list[Unit]) -> list[UnitOut]:
        """Render a task's units. An augmented copy that is another copy's mixing partner in the same
        task is rendered once and reused (the engine sends a block's units in one task when mixing):
        the copies to be mixed wait until every unit of the task is rendered, then are mixed."""
        wanted = {(p.item.source_id, p.copy) for u in units for ps in u.partners.values() for p in ps}
        cache: dict[tuple[str, int], np.ndarray] = {}
        outs, waiting = [], []
        for unit in units:
            out, pending = self._render(unit, wanted, cache)
            outs.append(out)
            waiting += [(out, unit, *p) for p in pending]
        for out, unit, index, copy, image, params in waiting:
            out.records[index] = self._finish_copy(unit, copy, image, params, cache)
        return outs

    def process_unit(self, unit: Unit) -> UnitOut:
        return self.process([unit])[0]

    def _render(self, unit: Unit, wanted: set[tuple[str, int]], cache: dict[tuple[str, int], np.ndarray]
                ) -> tuple[UnitOut, list[tuple[int, int, np.ndarray, list[dict[str, Any]]]]]:
        """Decode and augment every copy of one unit; copies without partners are finished at once,
        the others returned as (record index, copy, image, params) to be mixed."""
        item = unit.item
        try:
            pixels = self.decode(item)
        except DecodeError as exc:
            return UnitOut(item.source_id, [], str(exc)), []
        records: list[RecordOut | None] = []
        pending = []
        for copy in unit.copies:
            try:
                image, params = self.augment(item.source_id, item.label, copy, pixels)
            except StageFailed as failed:
                return UnitOut(item.source_id, [], self._failure(failed, copy, pixels)), []
            if (item.source_id, copy) in wanted:
                cache[(item.source_id, copy)] = image
            if unit.partners.get(copy):
                pending.append((len(records), copy, image, params))
                records.append(None)
            else:
                records.append(self.build_record(item.source_id, item.label, copy, image, params))
        return UnitOut(item.source_id, records), pending  # type: ignore[arg-type]

    @staticmethod
    def _failure(failed: StageFailed, copy: int, pixels: np.ndarray) -> str:
        exc = failed.error
        if isinstance(exc, VariantError):  # e.g. a TTA crop larger than this image: skip the image
            return str(exc)
        return (f"copy {copy}: a stage failed on this image ({pixels.shape[1]}x{pixels.shape[0]}x{pixels.shape[2]}): "
                f"{type(exc).__name__}: {exc}")

    def _finish_copy(self, unit: Unit, copy: int, image: np.ndarray, params: list[dict[str, Any]],
                     cache: dict[tuple[str, int], np.ndarray]) -> RecordOut:
        """Mix the copy with its partners (or leave that to the main process), encode, frame."""
        item = unit.item
        steps = self._mix_steps(item.source_id, copy, image, unit.partners.get(copy, []), cache)
        if not steps:
            return self.build_record(item.source_id, item.label, copy, image, params)
        if self.job.defer_mix:
            return RecordOut(copy, b"", item.label, False, None, pending=PendingMix(image, params, steps))
        mixed = image
        for step in steps:
            mixed = apply_mix(mixed, step.partner, step.entry)
        return self.build_record(item.source_id, item.label, copy, mixed, params, steps)

    def build_record(self, source_id: str, label: int, copy: int, image: np.ndarray, params: list[dict[str, Any]],
                     steps: list[MixStep] = ()) -> RecordOut:  # type: ignore[assignment]
        """Encode and frame one record; `image` is already mixed by `steps`. Shared by the worker
        and the main-process batch stage, so both write the same record. An empty CutMix box
        pastes nothing (lambda 1): that step does not count as mixing."""
        params = [*params, *(s.entry for s in steps)]
        mixing = [(s.partner_label, s.entry["lambda"]) for s in steps if s.entry["lambda"] < 1.0]
        first = next((s for s in steps if s.entry["lambda"] < 1.0), None)
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
        return RecordOut(copy, frame(encode_example(record.features())), label, first is not None,
                         encoded if self.job.keep_image else None)

    def _mix_steps(self, source_id: str, copy: int, image: np.ndarray, partners: list[Partner],
                   cache: dict[tuple[str, int], np.ndarray]) -> list[MixStep]:
        """Each partner's own augmented copy (from this task, or recomputed: the same bytes either
        way) and the sampled entry; a partner that cannot be rendered is left out (no mixing)."""
        mix = self.pipeline.mix
        steps = []
        for partner in partners:
            try:
                partner_image = cache.get((partner.item.source_id, partner.copy))
                if partner_image is None:
                    pixels = self.decode(partner.item)
                    partner_image, _ = self.augment(partner.item.source_id, partner.item.label, partner.copy, pixels)
            except SourceUnavailable:  # the store is down: fail the run rather than leave the copy unmixed
                raise
            except Exception:  # unreadable, or a stage fails on it: the partner is skipped on its own
                continue
            assert mix is not None
            entry = mix.entries[partner.entry]
            rng = example_rng(self.pipeline.seed, source_id, copy, streams(partner.entry)[1])
            drawn = sample_mix(rng, entry.draw_method(rng), entry.alpha, image.shape[0], image.shape[1])
            recorded = {"stage": "mix", **drawn, "partner_copy": partner.copy}
            if partner.entry > 0:  # the first entry's partner is the record's mix_source_id
                recorded["partner_source_id"] = partner.item.source_id
            steps.append(MixStep(match_size(partner_image, image.shape), recorded, partner.item.source_id,
                                 partner.item.label))
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


def init_worker(job: Job, parent: int, threads: int) -> None:
    """Worker start-up. Ctrl-C (SIGINT to the whole process group) is the main process's to handle:
    it stops the workers itself, so no worker prints a KeyboardInterrupt traceback of its own.
    OpenCV gets `threads` threads: the cores shared out between the workers (its default, one
    thread per core in every worker, makes the workers fight over the cores)."""
    global _RENDERER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    import cv2

    cv2.setNumThreads(threads)
    _RENDERER = Renderer(job)


def run_units(units: list[Unit]) -> list[UnitOut]:
    assert _RENDERER is not None, "init_worker was not called"
    return _RENDERER.process(units)
