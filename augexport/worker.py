"""What runs in a worker process: decode -> per-image stages -> mix -> encode -> framed record.

Never imports TensorFlow. Everything random comes from the record's own generators. With
`Job.defer_mix` (a TensorFlow batch stage in the main process, see device.py) a copy to be mixed
comes back as a `PendingMix` (base, partner, sampled params) and the main process mixes it and
builds the record with the same `Renderer.build_record`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import codec
from .errors import DecodeError
from .pipeline import Pipeline, build_pipeline
from .plan import CopyPlan, make_plan
from .records import Record, encode_example, frame
from .registry import StageFailed, run_stages
from .rng import example_rng
from .sources import DEFAULT_MAX_FILE_BYTES, SourceItem
from .stages.mix import apply_mix, match_size, sample_mix, soft_label
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
    defer_mix: bool = False  # leave mixing (and encoding the mixed copies) to the main process


@dataclass(frozen=True)
class Unit:
    """One source image and the copies to make of it; `partners[copy]` = (partner item, its copy)."""

    item: SourceItem
    copies: tuple[int, ...]
    partners: dict[int, tuple[SourceItem, int]] = field(default_factory=dict)


@dataclass
class PendingMix:
    """A copy whose mixing is left to the main process: the augmented base, the partner's augmented
    copy already resized to the base's size, the stage params so far and the sampled mix entry."""

    base: np.ndarray
    partner: np.ndarray
    params: list[dict[str, Any]]
    entry: dict[str, Any]
    partner_id: str
    partner_label: int


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
        self.plan: CopyPlan = make_plan(self.pipeline, job.variants)
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
        return [self.process_unit(u) for u in units]

    def process_unit(self, unit: Unit) -> UnitOut:
        item = unit.item
        try:
            pixels = self.decode(item)
        except DecodeError as exc:
            return UnitOut(item.source_id, [], str(exc))
        out = []
        for copy in unit.copies:
            try:
                image, params = self.augment(item.source_id, item.label, copy, pixels)
            except StageFailed as failed:
                exc = failed.error
                if isinstance(exc, VariantError):  # e.g. a TTA crop larger than this image: skip the image
                    return UnitOut(item.source_id, [], str(exc))
                return UnitOut(item.source_id, [], f"copy {copy}: a stage failed on this image "
                               f"({pixels.shape[1]}x{pixels.shape[0]}x{pixels.shape[2]}): {type(exc).__name__}: {exc}")
            out.append(self._finish_copy(unit, copy, image, params))
        return UnitOut(item.source_id, out)

    def _finish_copy(self, unit: Unit, copy: int, image: np.ndarray, params: list[dict[str, Any]]) -> RecordOut:
        """Mix the copy if it has a partner (or leave that to the main process), encode, frame."""
        item = unit.item
        mix = self._prepare_mix(item.source_id, copy, image, params, *unit.partners[copy]) \
            if copy in unit.partners else None
        if mix is None:
            return self.build_record(item.source_id, item.label, copy, image, params)
        if self.job.defer_mix:
            return RecordOut(copy, b"", item.label, False, None, pending=mix)
        return self.build_record(item.source_id, item.label, copy, apply_mix(mix.base, mix.partner, mix.entry), params, mix)

    def build_record(self, source_id: str, label: int, copy: int, image: np.ndarray, params: list[dict[str, Any]],
                     mix: PendingMix | None = None) -> RecordOut:
        """Encode and frame one record; `image` is already mixed when `mix` is given. Shared by the
        worker and the main-process batch stage, so both write the same record."""
        mixed_with, lam, partner_label = "", 1.0, None
        if mix is not None:
            params = [*params, mix.entry]
            if mix.entry["lambda"] < 1.0:  # an empty CutMix box pastes nothing: the record is not mixed
                mixed_with, lam, partner_label = mix.partner_id, mix.entry["lambda"], mix.partner_label
        encoded = codec.encode(image, self.job.encoding, self.job.quality)
        record = Record(
            image=encoded,
            label=label,
            soft_label=soft_label(label, self.job.num_classes, self.pipeline.label_smoothing, partner_label, lam),
            source_id=source_id,
            copy=copy,
            variant=self.plan.variant(copy),
            mix_source_id=mixed_with,
            mix_lambda=lam,
            params=params,
        )
        return RecordOut(copy, frame(encode_example(record.features())), label, bool(mixed_with),
                         encoded if self.job.keep_image else None)

    def _prepare_mix(self, source_id: str, copy: int, image: np.ndarray, params: list[dict[str, Any]],
                     partner: SourceItem, partner_copy: int) -> PendingMix | None:
        """The partner's own augmented copy (recomputed here: same bytes in any worker) and the
        sampled mix params; None when the partner cannot be rendered (this copy then stays unmixed)."""
        try:
            partner_pixels = self.decode(partner)
            partner_image, _ = self.augment(partner.source_id, partner.label, partner_copy, partner_pixels)
        except Exception:  # unreadable, or a stage fails on it: the partner is skipped on its own
            return None
        mix = self.pipeline.mix
        assert mix is not None
        rng = example_rng(self.pipeline.seed, source_id, copy, "mix-params")
        drawn = sample_mix(rng, mix.method, mix.alpha, image.shape[0], image.shape[1])
        return PendingMix(image, match_size(partner_image, image.shape), params,
                          {"stage": "mix", **drawn, "partner_copy": partner_copy}, partner.source_id, partner.label)


_RENDERER: Renderer | None = None


def init_worker(job: Job) -> None:
    """Worker start-up. Ctrl-C (SIGINT to the whole process group) is the main process's to handle:
    it stops the workers itself, so no worker prints a KeyboardInterrupt traceback of its own."""
    global _RENDERER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _RENDERER = Renderer(job)


def run_units(units: list[Unit]) -> list[UnitOut]:
    assert _RENDERER is not None, "init_worker was not called"
    return _RENDERER.process(units)
