"""One export, as a run object: prepare -> resume state -> write (local | beam) -> finalize / abort.

`ExportRun.execute()` is what `api.export` and `api.tta` call. Preparing validates every option
and the pipeline (a dry run of every stage) before OUT is touched; then OUT is created and locked,
the source listed, and the OUT plan decided (fresh, add a split, replace one, or resume from the
journal). Writing streams records from the engine (or the Beam pipeline) into the sinks; finalizing
retires what `--overwrite` replaces, renames the shards and image folder into place and writes the
errors file, TFDS metadata and, last, the manifest. Any failure aborts: temporaries go, nothing is
left under a final name, and an interrupt keeps the finished shards and journal for `--resume`.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__, codec
from .classes import check_classes, check_label_names
from .device import DevicePath, block_finisher, describe
from .device import resolve as resolve_device
from .engine import Emitted, blocks_after, in_spawned_bootstrap, plan_export, run
from .errors import ExportFailed, Interrupted, UsageError, WorkerDied
from .featurewise import featurewise_stats, needs_featurewise_stats
from .fs import is_url, local_path, open_fs
from .manifest import FORMAT_VERSION, read_manifest, write_manifest
from .naming import (
    MANIFEST,
    TFDS_METADATA,
    SplitNames,
    class_dir_clash,
    colliding_ids,
    dataset_name,
    image_file,
    is_spool,
    safe_class_dir,
)
from .objstore import open_outdir
from .offload import Offload, offload
from .options import ExportOptions, is_tfds
from .outdir import OutDir
from .pipeline import Pipeline, dry_run, flag_overrides, resolve_with_flags
from .plan import CopyPlan, make_plan
from .quiet import quiet_stderr
from .reader import shard_records
from .records import decode_example
from .resume import (
    Journal,
    OutPlan,
    ResumeState,
    adopt_images,
    describe_changes,
    identity_key,
    load_for_resume,
    plan_out,
    read_journal,
    resumed_plan,
    retire,
)
from .sinks.images import ImageFolderWriter, ImageLayout, whole_kept_files
from .sinks.tfds_meta import write_metadata
from .sinks.tfrecord import ShardInfo, ShardWriter, rename_final
from .sources import SourceListing
from .sources.arrays import MEMORY, is_array_source
from .sources.open import open_source
from .sources.tfds import dataset_folder
from .targets import make_out_dir, remove_made_parents, resolved
from .worker import Job


def sources_in(listing: SourceListing) -> int:
    """The inputs an export counts: the images listed, and those that could not be (a --labels row
    outside SOURCE, an unreadable folder), which it reports as skipped, so that in = out + skipped
    for one record per image."""
    return len(listing.items) + len(listing.problems)


@dataclass
class ExportResult:
    out: Path | str  # a str for URLs (Path would turn s3://b/x into s3:/b/x)
    split: str
    sources: int
    written: int
    skipped: int
    seconds: float
    shards: list[dict[str, Any]] = field(default_factory=list)
    path: str = ""  # which path ran: "cpu", or "device (keras, mix on jax cuda:0)"
    ignored: int = 0  # files in SOURCE passed over: hidden, or not an image file name

    @property
    def images_per_s(self) -> float:
        return self.sources / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        ignored = f", {self.ignored} ignored (hidden or not image files; listed in the manifest)" if self.ignored else ""
        return (f"augexport: {self.sources} images in, {self.written} records out, {self.skipped} skipped{ignored}, "
                f"{self.seconds:.1f} s, {self.images_per_s:.1f} images/s -> {self.out} "
                f"({self.split}: {len(self.shards)} shard{'s' if len(self.shards) != 1 else ''})"
                + (f"; path: {self.path}" if self.path else "") + self._warning())

    def _warning(self) -> str:
        if self.written or not self.skipped:
            return ""
        errors = SplitNames("x", self.split).errors_file
        return f"\nwarning: no records written: every input was skipped; the reasons are in {errors}"


@dataclass
class Progress:
    """What the run has written so far (saved in the journal after every shard)."""

    written: int = 0
    mixed: int = 0
    label_counts: list[int] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)

    def snapshot(self) -> dict[str, Any]:
        # copies, not the live lists: each shard's state must stay what it was when it closed
        return {"written": self.written, "mixed": self.mixed, "label_counts": list(self.label_counts),
                "errors": [list(e) for e in self.errors]}


class ExportRun:
    """One export of SOURCE into OUT; `tta` ({"spec", "variants"}) makes it a TTA set."""

    def __init__(self, source: str, out: str | Any, options: ExportOptions, tta: dict[str, Any] | None = None) -> None:
        self.source = str(source)
        self.out_arg = str(out)  # as given: Path() would turn gs://b/x into gs:/b/x
        self.outdir: OutDir = open_outdir(self.out_arg)  # a URL needs its fsspec package: exit 2 here
        self.out: Path | str = self.outdir.location if self.outdir.remote else Path(self.outdir.location)
        if is_url(self.source):
            open_fs(self.source, f"SOURCE {self.source}")
        self.options = options
        self.tta = tta
        self.t0 = time.perf_counter()
        self.listing: SourceListing | None = None
        self.images_info: dict[str, Any] | None = None  # the image folder's manifest entry, once finalized

    # -- prepare ------------------------------------------------------------------------------
    def execute(self) -> ExportResult:
        if in_spawned_bootstrap():
            raise UsageError('augexport was called while a worker process imported the main script: put the '
                             'call under `if __name__ == "__main__":` (spawned workers import the script again)')
        opts = self.options
        opts.check(self.source)
        if opts.runner == "beam":
            _check_beam(opts)
        self.pipeline: Pipeline = resolve_with_flags(opts.config, opts.overrides, self._flags())
        dry_run(self.pipeline, opts.channels)
        assert opts.workers is not None  # resolved by check()
        self.batch: DevicePath = resolve_device("cpu" if opts.runner == "beam" else opts.device, self._offload(),
                                                opts.workers)
        self._check_source_and_out()
        created = _make_dir(self.outdir)
        try:
            with self.outdir.lock():
                return self._locked()
        except BaseException as exc:
            if created is not None:
                self._remove_made_out(created)
            if isinstance(exc, OSError):  # OUT stopped being writable (a full disk, a vanished mount)
                raise ExportFailed(f"cannot write in {self.out}: {exc.strerror or exc}; nothing was finalized") from None
            raise
        finally:
            if self.listing is not None:
                self.listing.release()

    def _offload(self) -> Offload:
        """What the device path would take over: the device-capable suffix of every stage list
        (default and per class) and the mixing. TTA sets stay on the CPU path (no mixing; their
        variants are deterministic stages)."""
        p = self.pipeline
        if self.tta is not None:
            return Offload()
        lists = [p.stages, *(c.stages_for(p.stages) for c in p.classes.values())]
        return offload(lists, p.mix is not None, p.image_size)

    def _flags(self) -> dict[str, Any]:
        o = self.options
        return flag_overrides(o.config, seed=o.seed, copies=o.copies, include_original=o.include_original,
                              image_size=o.image_size, label_smoothing=o.label_smoothing, keras=o.keras,
                              mix_method=o.mix_method, mix_alpha=o.mix_alpha, mix_p=o.mix_p,
                              resize={"interpolation": o.interpolation, "crop_to_aspect_ratio": o.crop_to_aspect_ratio,
                                      "pad_to_aspect_ratio": o.pad_to_aspect_ratio})

    def _check_source_and_out(self) -> None:
        if is_tfds(self.source):
            folder = dataset_folder(self.source, self.options.data_dir)
            if folder is not None and not self.outdir.remote and _inside(self.outdir.location, folder):
                raise UsageError(f"OUT {self.out} is inside {folder}, where SOURCE {self.source} is read from; "
                                 "SOURCE is read-only: choose another OUT")
            return
        if is_array_source(self.source) or is_url(self.source) != self.outdir.remote:
            return
        if self.outdir.remote:
            inside = (self.outdir.location + "/").startswith(self.source.rstrip("/") + "/")
        else:
            inside = _inside(self.outdir.location, local_path(self.source))
        if inside:
            raise UsageError(f"OUT {self.out} is inside SOURCE {self.source}; SOURCE is read-only: choose another OUT")

    def _remove_made_out(self, created: Path) -> None:
        """An OUT this run made, still empty, goes: the filesystem as it was. A mount gone bad
        meanwhile (EIO) leaves it; the run's own error says what happened."""
        try:
            if not [e for e in self.outdir.entries() if not is_spool(e)]:
                self.outdir.remove_root()
                if not self.outdir.remote:
                    remove_made_parents(Path(self.outdir.location), created)
        except OSError:
            pass

    def _locked(self) -> ExportResult:
        opts = self.options
        self.listing = open_source(self.source, labels=opts.labels, name=opts.name, split=opts.split,
                                   data_dir=opts.data_dir, image_key=opts.image_key, label_key=opts.label_key,
                                   spool_dir=self.outdir.location, arrays=opts.array_options())
        check_label_names(self.listing.class_names, "class_names" if self.source == MEMORY else f"SOURCE {self.source}")
        if self.listing.kind == "folder" and not self.outdir.remote:
            _check_out_outside_class_links(self.listing, self.outdir.location, self.out)
        if opts.keeps_images:
            _check_image_folders(self.listing.class_names, opts.fmt)
        _check_array_rows(self.listing, self.source, opts.max_pixels)
        self.names = SplitNames(dataset_name(opts.name or self.listing.name), opts.base_split(self.source))
        self.plan: CopyPlan = self._plan(self.listing)
        for stale in self.outdir.entries():
            if is_spool(stale) and stale != self.listing.spool_name:
                self.outdir.remove(stale)  # left by a killed run
        self.identity = self._identity()
        journal = read_journal(self.outdir, self.names, len(self.listing.class_names), self.identity) \
            if opts.resume else None
        if journal is None:
            done = self._already_done()
            if done is not None:
                return done
            state, plan = ResumeState(), plan_out(
                self.outdir, self.names, self.listing.class_names, opts.channels, opts.encoding, opts.overwrite,
                opts.resume, ignore=(self.listing.spool_name,) if self.listing.spool_name else (),
                resumable=opts.runner != "beam")
        else:
            state = load_for_resume(self.outdir, self.names, self.identity, journal)
            plan = resumed_plan(self.outdir, journal, self.names, self.listing.class_names, opts.channels,
                                opts.encoding)
        return self._write(state, plan, resuming=journal is not None)

    def _plan(self, listing: SourceListing) -> CopyPlan:
        """The copy plan; per-class overrides are checked against the listed classes first."""
        if self.pipeline.classes:
            counts = [0] * len(listing.class_names)
            for item in listing.items:
                counts[item.label] += 1
            check_classes(self.pipeline.classes, listing.class_names, counts, self.pipeline.include_original,
                          self.pipeline.source)
        return make_plan(self.pipeline, self.tta["variants"] if self.tta else (), listing.class_names, listing.items)

    def _identity(self) -> dict[str, Any]:
        o, listing = self.options, self.listing
        assert listing is not None
        identity = {"pipeline": self.pipeline.to_spec(), "source": listing.location, "fingerprint": listing.fingerprint,
                    "name": self.names.dataset, "split": o.split, "format": o.fmt, "encoding": o.encoding,
                    "quality": o.quality, "channels": o.channels, "num_shards": o.num_shards,
                    "shard_bytes": None if o.num_shards else o.shard_bytes, "compression": o.compression,
                    "shuffle": o.shuffle, "max_pixels": o.max_pixels, "max_file_bytes": o.max_file_bytes}
        if self.tta is not None:
            identity["tta"] = self.tta
        return identity

    def _already_done(self) -> ExportResult | None:
        """`--resume` of a split that finished: nothing to do (the same arguments are required)."""
        manifest = read_manifest(self.outdir) if self.options.resume else None
        done = (manifest or {}).get("splits", {}).get(self.names.split)
        if done is None:
            return None
        if done.get("identity") != identity_key(self.identity):
            shown = {"pipeline": done.get("pipeline"), "format": done.get("format"), "encoding": done.get("encoding"),
                     "quality": done.get("quality"), "compression": done.get("compression"),
                     "shuffle": done.get("shuffle"), "source": done.get("source", {}).get("location"),
                     "fingerprint": done.get("source", {}).get("fingerprint")}  # what the entry records
            changed = describe_changes(shown, {k: self.identity.get(k) for k in shown})
            raise UsageError(f"--resume: split {self.names.split!r} in {self.out} was written with "
                             f"{'a different ' + '; '.join(changed) if changed else 'other arguments or another source'}"
                             "; use --overwrite to replace it")
        c = done["counts"]
        return ExportResult(self.out, self.names.split, c["source"], c["written"], c["skipped"], 0.0, done["shards"],
                            describe(done.get("timings", {})))

    # -- write ----------------------------------------------------------------------------------
    def _write(self, state: ResumeState, plan: OutPlan, resuming: bool) -> ExportResult:
        opts, listing = self.options, self.listing
        assert listing is not None
        self.out_plan = plan
        if opts.keeps_images:
            plan.replaces = adopt_images(self.outdir, self.names, identity_key(self.identity), resuming, plan.replaces)
            if state.finished:
                state.keep_records(whole_kept_files(self.outdir, self.names, len(listing.class_names),
                                                    state.counters.get("written", 0)))
        self.journal = Journal(self.outdir, self.names, self.identity, plan, finished=state.entries)
        if opts.runner == "local":  # Beam runs are not resumable: a failed one removes its own temporaries
            self.journal.save()
        assert isinstance(opts.max_file_bytes, int)
        self.job = Job(self.pipeline.to_spec(), len(listing.class_names), opts.channels, opts.encoding, opts.quality,
                       opts.max_pixels, opts.max_file_bytes, keep_image=opts.keeps_images,
                       variants=tuple(self.tta["variants"]) if self.tta else (),
                       class_names=tuple(listing.class_names) if self.pipeline.classes else ())
        c = state.counters
        self.progress = Progress(c.get("written", 0), c.get("mixed", 0),
                                 list(c.get("label_counts") or [0] * len(listing.class_names)),
                                 [tuple(e) for e in c.get("errors", [])] or list(listing.problems))
        decoder = codec.Decoder(opts.channels, self.pipeline.image_size, opts.max_pixels, self.pipeline.resize)
        self.stats = (featurewise_stats(listing.items, self.pipeline, decoder)
                      if needs_featurewise_stats(self.pipeline) else None)
        if self.progress.errors and opts.on_error == "fail":
            first = self.progress.errors[0]
            if opts.runner == "local":
                self.journal.remove()
            raise ExportFailed(f"{first[0]}: {first[1]} (--on-error fail)")
        if opts.runner == "beam":
            return self._write_beam()
        return self._write_local(state)

    def _write_local(self, state: ResumeState) -> ExportResult:
        opts, listing = self.options, self.listing
        assert listing is not None
        images = ImageFolderWriter(self.outdir, self.names, identity_key(self.identity),
                                   num_classes=len(listing.class_names),
                                   keep_rows=state.counters.get("written", 0) if state.finished else 0
                                   ) if opts.keeps_images else None

        def shard_closed(info: ShardInfo, last: int) -> None:
            if images is not None:
                images.flush()  # the labels rows of the records this shard holds are on disk with it
            self.journal.record(info, last, self.progress.snapshot())

        writer = ShardWriter(self.outdir, self.names, planned_total=self.plan.total(listing.items),
                             num_shards=opts.num_shards, shard_bytes=opts.shard_bytes, compression=opts.compression,
                             finished=state.finished, on_shard_closed=shard_closed) if opts.writes_shards else None
        last = state.last_planned if state.finished else -1
        blocks = blocks_after(plan_export(listing.items, self.plan, self.pipeline.mix, opts.shuffle), last)
        if opts.on_start:  # blocks are planned as they are written (held all at once, they grow with N)
            opts.on_start(len(listing.items) if last < 0 else
                          sum(len(b.units) for b in blocks_after(plan_export(
                              listing.items, self.plan, self.pipeline.mix, opts.shuffle), last)))
        mixer = block_finisher(self.job, self.batch)
        try:
            self._stream(blocks, mixer, writer, images, state.last_planned if state.finished else -1)
        except OSError as exc:
            self._abort(writer, images)
            raise ExportFailed(f"write error in {self.out}: {exc.strerror or exc}; nothing was finalized") from None
        except (KeyboardInterrupt, Interrupted, WorkerDied):
            if writer is not None:
                writer.abort(keep_finished=True)  # finished shards + journal stay for --resume
            raise
        except BaseException:
            self._abort(writer, images)
            raise
        timings: dict[str, Any] = self.batch.timings()
        if mixer is not None:
            timings["device_seconds"] = round(mixer.seconds, 3)  # main process: device stages + mixing
            timings["device_copies"] = mixer.copies
        shards = writer.close() if writer is not None else []
        return self._finalize(shards, timings, images)

    def _stream(self, blocks: Iterable[Any], mixer: Any, writer: ShardWriter | None, images: ImageFolderWriter | None,
                last_written: int) -> None:
        """Engine records -> sinks, in final order; failed sources go to the errors list."""
        opts, listing, progress = self.options, self.listing, self.progress
        assert listing is not None
        seen = {sid for sid, _ in progress.errors}
        collisions = colliding_ids((listing.class_names[it.label], it.source_id) for it in listing.items) \
            if images else set()
        ext = codec.EXTENSIONS[opts.encoding]
        assert opts.workers is not None
        for rec in run(blocks, replace(self.job, device=mixer is not None), workers=opts.workers,
                       batch_size=opts.batch_size, on_progress=opts.progress, finish_block=mixer):
            if not isinstance(rec, Emitted):
                if rec.source_id not in seen:
                    seen.add(rec.source_id)
                    progress.errors.append((rec.source_id, rec.error or "unknown error"))
                if opts.on_error == "fail":
                    raise ExportFailed(f"{rec.source_id}: {rec.error} (--on-error fail; nothing was finalized)")
                continue
            if rec.planned_index <= last_written:
                continue  # already in a kept shard
            if writer is not None:
                writer.write(rec.planned_index, rec.framed)
            if images is not None and rec.image is not None:
                class_name = listing.class_names[rec.label]
                images.write(image_file(self.names, class_name, rec.source_id, rec.copy, ext, collisions), rec.image,
                             rec.framed)
            progress.written += 1
            progress.mixed += rec.mixed
            progress.label_counts[rec.label] += 1

    def _write_beam(self) -> ExportResult:
        from .beam import run_export  # Apache Beam only for --runner beam

        opts, listing = self.options, self.listing
        assert listing is not None
        images = ImageFolderWriter(self.outdir, self.names, identity_key(self.identity),
                                   num_classes=len(listing.class_names)) if opts.keeps_images else None
        image_layout = None if images is None else ImageLayout(
            listing.class_names, frozenset(colliding_ids((listing.class_names[it.label], it.source_id)
                                                         for it in listing.items)), codec.EXTENSIONS[opts.encoding])
        try:
            with quiet_stderr():  # Beam's and its workers' log lines; shown with --verbose or on failure
                got = run_export(listing, self.plan, self.pipeline.mix, self.job, outdir=self.outdir, names=self.names,
                                 shuffle=opts.shuffle, num_shards=opts.num_shards, shard_bytes=opts.shard_bytes,
                                 compression=opts.compression, on_error=opts.on_error,
                                 beam_options=list(opts.beam_options or []), shards=True, images=image_layout)
            if images is not None and image_layout is not None:
                self._beam_labels(images, image_layout, got.shards)
                if not opts.writes_shards:  # --format images: the shards were only the labels' source
                    for info in got.shards:
                        self.outdir.unlink(info.file)
                    got.shards = []
        except BaseException:
            self._abort(None, images)  # the workers' image files go with their temporary folder
            raise
        seen = {sid for sid, _ in self.progress.errors}
        self.progress.errors += [e for e in got.errors if e[0] not in seen]
        self.progress.written, self.progress.mixed, self.progress.label_counts = got.written, got.mixed, got.label_counts
        timings = {"runner": "beam", **self.batch.timings()}
        return self._finalize(got.shards, timings, images)

    def _beam_labels(self, images: ImageFolderWriter, layout: ImageLayout, shards: list[ShardInfo]) -> None:
        """labels.csv of the image files the Beam workers wrote, read back from the temporary shards
        (in record order, as the local runner writes its rows)."""
        compression = self.options.compression
        for info in shards:
            for data in shard_records(self.outdir, info.file, compression):
                ex = decode_example(data)
                sid, copy = ex["source_id"][0].decode("utf-8", "surrogateescape"), int(ex["copy"][0])
                class_name = layout.class_names[int(ex["label"][0])]
                images.add_row(image_file(self.names, class_name, sid, copy, layout.ext, layout.collisions), ex)

    # -- finalize / abort ---------------------------------------------------------------------------
    def _finalize(self, closed: list[ShardInfo], timings: dict[str, Any],
                  images: ImageFolderWriter | None) -> ExportResult:
        """Retire what --overwrite replaces, move shards and images into place, then errors file,
        TFDS metadata and the manifest (last). A write error here puts the shards back under their
        temporary names, so nothing looks finished and `--resume` completes the run."""
        plan = self.out_plan
        try:
            retire(self.outdir, plan.manifest, plan.replaces, self.names.split)
            shards = rename_final(self.outdir, self.names, closed)
            if images is not None:
                self.images_info = images.finalize()
            seconds = time.perf_counter() - self.t0
            self._write_metadata(shards, seconds, timings)
        except OSError as exc:
            self._unfinalize(closed, images)
            done = ("nothing was finalized" if not plan.replaces else
                    "this run was not finalized, and what --overwrite replaces may already be gone")
            raise ExportFailed(f"write error while finalizing {self.out}: {exc.strerror or exc}; {done} (finished "
                               "shards were kept: rerun with --resume once the problem is fixed)") from None
        self.journal.remove()  # only now: a run killed while finalizing stays resumable
        self.outdir.fsync()
        listing = self.listing
        assert listing is not None
        p = self.progress
        return ExportResult(self.out, self.names.split, sources_in(listing), p.written, len(p.errors), seconds,
                            [s.to_json() for s in shards], describe(timings), len(listing.ignored))

    def _write_metadata(self, shards: list[ShardInfo], seconds: float, timings: dict[str, Any]) -> None:
        p = self.progress
        errors = "".join(json.dumps({"source_id": s, "error": e}, ensure_ascii=False) + "\n" for s, e in p.errors)
        self.outdir.write_atomic(self.names.errors_file, errors.encode("utf-8", "surrogateescape"))
        base = self._manifest_entry(shards, seconds, timings)
        write_metadata(self.outdir, base)
        write_manifest(self.outdir, base)

    def _manifest_entry(self, shards: list[ShardInfo], seconds: float, timings: dict[str, Any]) -> dict[str, Any]:
        """The manifest this run leaves: the one it extends (or a new one) with its split's entry."""
        o, listing, p = self.options, self.listing, self.progress
        assert listing is not None and o.workers is not None
        entry = {
            "command": o.command or [],
            "pipeline": self.pipeline.to_spec(),
            "seed": self.pipeline.seed,
            "source": {"kind": listing.kind, "location": listing.location, "fingerprint": listing.fingerprint,
                       "split": o.split if is_tfds(self.source) else None},
            "format": o.fmt, "encoding": o.encoding, "quality": o.quality, "compression": o.compression,
            "shuffle": o.shuffle, "tfds_loadable": o.writes_shards and o.compression == "none",
            "identity": identity_key(self.identity),
            "shards": [s.to_json() for s in shards],
            "counts": {"source": sources_in(listing), "written": p.written, "skipped": len(p.errors), "mixed": p.mixed,
                       "ignored": len(listing.ignored)},
            "ignored": [{"path": path, "why": why} for path, why in listing.ignored[:1000]],
            "label_counts": p.label_counts,
            "errors_file": self.names.errors_file,
            **({"tta": self.tta} if self.tta is not None else {}),
            **({"featurewise_stats": self.stats} if self.stats is not None else {}),
            **({"class_plan": self.plan.class_report(listing.items)} if self.pipeline.classes else {}),
            **({"images": self.images_info} if self.images_info else {}),
            "timings": {"seconds": round(seconds, 3),
                        "images_per_s": round(len(listing.items) / seconds, 2) if seconds else None,
                        "workers": o.workers, "batch_size": o.batch_size, **timings},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        base = self.out_plan.manifest or {"version": FORMAT_VERSION, "name": self.names.dataset,
                                          "class_names": listing.class_names, "channels": o.channels,
                                          "encoding": o.encoding, "splits": {}}
        base = {**base, "splits": dict(base["splits"])}
        base.update({"augexport_version": __version__, "command": entry["command"], "pipeline": entry["pipeline"],
                     "seed": self.pipeline.seed, "source": entry["source"]})
        base["splits"][self.names.split] = entry
        return base

    def _unfinalize(self, closed: list[ShardInfo], images: ImageFolderWriter | None) -> None:
        """Best effort after a failed finalize: no manifest, final names back to temporary ones. The
        journal stays, so --resume completes the run from whatever state this leaves. It stops at the
        first failure other than a missing file: the store itself is failing (unreachable, full), and
        every further call would only wait out its retries (seconds each, per shard)."""
        total = len(closed)
        try:
            if self.out_plan.manifest is None and self.outdir.exists(MANIFEST):
                self.outdir.unlink(MANIFEST)
            self.outdir.unlink(self.names.errors_file)
            if self.out_plan.manifest is None:  # the TFDS metadata agrees with the manifest in OUT again
                for name in TFDS_METADATA:
                    self.outdir.unlink(name)
            else:
                write_metadata(self.outdir, self.out_plan.manifest)
            for i, info in enumerate(closed):
                final = self.names.shard(i, total)
                if self.outdir.exists(final) and not self.outdir.exists(info.file):
                    self.outdir.rename(final, info.file)
            if images is not None and self.outdir.is_dir(self.names.images_dir) \
                    and not self.outdir.exists(self.names.temp_images_dir):
                self.outdir.rename(self.names.images_dir, self.names.temp_images_dir)
        except OSError:
            return

    def _abort(self, writer: ShardWriter | None, images: ImageFolderWriter | None) -> None:
        """A failed run removes its temporaries and journal; errors here (a full disk) are not the user's."""
        for step in (lambda: writer.abort() if writer is not None else None,
                     lambda: images.abort() if images is not None else None,
                     self.journal.remove):
            try:
                step()
            except OSError:
                pass


def _make_dir(outdir: OutDir) -> Path | None:
    """Create OUT (and its parents) when missing; the topmost folder this run created, or None. Every reason it
    cannot be used (a file in the way, a dangling link, a name too long, a place that refuses
    writes) is a usage error before any work (targets.make_out_dir). An object-store prefix needs
    no creating: it is checked (reachable, bucket there) instead."""
    if outdir.remote:
        outdir.prepare()
        return None
    return make_out_dir(Path(outdir.location))


def _inside(path: str, folder: str) -> bool:
    """`path` is `folder` or below it, symbolic links resolved."""
    p, f = resolved(path, "OUT"), resolved(folder, "SOURCE")
    return p == f or f in p.parents


def _check_out_outside_class_links(listing: SourceListing, out_location: str, out: Any) -> None:
    """A class folder may link to a folder elsewhere; OUT must not be inside that one either, or
    the run writes into what it reads (and a rerun reads its own output as images)."""
    for name in listing.class_names:
        folder = os.path.join(listing.location, name)
        if os.path.islink(folder) and _inside(out_location, folder):
            raise UsageError(f"OUT {out} is inside {os.path.realpath(folder)}, which SOURCE's class folder {name!r} "
                             "links to; SOURCE is read-only: choose another OUT")


def _check_image_folders(class_names: list[str], fmt: str) -> None:
    """Each class has its own folder of image files."""
    clash = class_dir_clash(class_names)
    if clash is not None:
        raise UsageError(f"--format {fmt}: classes {clash[0]!r} and {clash[1]!r} would share the image folder "
                         f"{safe_class_dir(clash[0])!r} (names are made safe for file systems); rename one")


def _check_array_rows(listing: SourceListing, source: str, max_pixels: int | None) -> None:
    """An array's rows, all of one size, obey --max-pixels as decoded files do: every row's memory
    is a decoded image's."""
    pixels = getattr(listing.items, "pixels", None)
    if pixels is None or max_pixels is None:
        return
    h, w = pixels.shape[:2]
    if h * w > max_pixels:
        what = "x" if source == MEMORY else f"SOURCE {source}"
        raise UsageError(f"{what}: its rows are {h}x{w} (HxW) = {h * w} pixels, above --max-pixels {max_pixels}; "
                         "raise --max-pixels to export them")


def _check_beam(opts: ExportOptions) -> None:
    """--runner beam: what this version supports, checked before OUT is touched."""
    if importlib.util.find_spec("apache_beam") is None:
        raise UsageError("--runner beam needs Apache Beam, which is not installed: pip install 'augexport[beam]'")
    if opts.resume:
        raise UsageError("--resume is not available with --runner beam (a failed Beam run leaves nothing to resume); "
                         "rerun without it, adding --overwrite if OUT holds a partial run")
    with quiet_stderr():
        from .beam import check_runner, make_options, pipeline_flags  # imports apache_beam

        check_runner(make_options(pipeline_flags(list(opts.beam_options or []))))
