"""The Python API: what the CLI and the tests call. `export` and `inspect` live here."""

from __future__ import annotations

import datetime as _dt
import gzip
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__, codec
from .device import DEVICES, block_finisher
from .device import resolve as resolve_device
from .engine import BLOCK_ITEMS, Emitted, default_workers, run
from .errors import ExportFailed, Interrupted, UsageError, VerifyFailed
from .journal import Journal, identity_key, journal_path, load_for_resume
from .manifest import FORMAT_VERSION, MANIFEST, read_manifest, split_files, write_manifest
from .pipeline import Pipeline, build_pipeline, dry_run, load_spec_file
from .records import decode_example, read_tfrecords
from .sinks import atomic_write, fsync_dir
from .sinks.images import ImageFolderWriter, colliding_ids, image_relpath, temp_images_dir
from .sinks.tfds_meta import write_metadata
from .sinks.tfrecord import COMPRESSIONS, ShardWriter
from .sources import SourceListing
from .sources.folder import list_folder
from .sources.tfds import output_split_name
from .stages.keras import featurewise_stats, needs_featurewise_stats
from .worker import Job

FORMATS = ("tfrecord", "images", "both")
ON_ERROR = ("skip", "fail")
RUNNERS = ("local", "beam")
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
_UNITS = {None: 1, "b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}


def parse_size(text: str | int) -> int:
    """`256MiB`, `1GB`, `1048576` -> bytes."""
    if isinstance(text, int):
        return text
    m = _SIZE_RE.match(str(text))
    size = int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower() or None]) if m else 0
    if size < 1024:
        raise UsageError(f"--shard-size {text!r} is not accepted; accepted: a size of at least 1KiB, as a number "
                         "with B, KB, KiB, MB, MiB, GB or GiB (e.g. 256MiB)")
    return size


def dataset_name(name: str) -> str:
    """A TFDS-valid dataset name: lower snake case, starting with a letter."""
    clean = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not clean or not clean[0].isalpha():
        clean = f"ds_{clean}" if clean else "dataset"
    return clean


def _check_choice(flag: str, value: str, accepted: Sequence[str]) -> None:
    if value not in accepted:
        raise UsageError(f"{flag} {value!r} is not accepted; accepted: {', '.join(accepted)}")


def resolve_pipeline(config: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Pipeline:
    """Load the pipeline file (if any), merge CLI overrides (None values ignored), validate."""
    spec: dict[str, Any] = load_spec_file(config) if config else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            spec[key] = value
    return build_pipeline(spec, source=str(config) if config else None)


@dataclass
class ExportResult:
    out: Path
    split: str
    sources: int
    written: int
    skipped: int
    seconds: float
    shards: list[dict[str, Any]] = field(default_factory=list)
    batch_stages: str = ""  # where mixing ran: "numpy in workers", "TensorFlow on /GPU:0", "none"

    @property
    def images_per_s(self) -> float:
        return self.sources / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"augexport: {self.sources} images in, {self.written} records out, {self.skipped} skipped, "
                f"{self.seconds:.1f} s, {self.images_per_s:.1f} images/s -> {self.out} "
                f"({self.split}: {len(self.shards)} shard{'s' if len(self.shards) != 1 else ''})"
                + (f"; batch stages: {self.batch_stages}" if self.batch_stages else ""))


def open_source(source: str, *, labels: str | None = None, name: str | None = None, split: str | None = None,
                data_dir: str | None = None, channels: int = 3, image_key: str | None = None,
                label_key: str | None = None, spool_dir: str | os.PathLike[str] | None = None) -> SourceListing:
    """List SOURCE. tfds: sources spill their encoded images into `spool_dir` (export passes OUT, so
    nothing is written outside it; the spill is removed when the listing is released)."""
    if str(source).startswith("tfds:"):
        from .sources.tfds import list_tfds  # noqa: PLC0415 - tfds/TF only for tfds sources

        if labels:
            raise UsageError("--labels applies to folder sources only; a tfds: source has its own labels")
        return list_tfds(str(source)[5:], split=split, data_dir=data_dir, name=name, image_key=image_key,
                         label_key=label_key, spool_dir=spool_dir)
    if image_key or label_key:
        raise UsageError("--image-key/--label-key apply to tfds: sources only")
    return list_folder(source, labels=labels, name=name)


def _leftovers(out: Path, name: str, split: str) -> list[Path]:
    """Temporary shards, image folder and journal of an interrupted run of `split`."""
    found = [p for p in out.glob(f".tmp-{name}-{split}.tfrecord-*")]
    for path in (journal_path(out, split), temp_images_dir(out, split)):
        if path.exists():
            found.append(path)
    return found


def _delete(paths: Sequence[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _prepare_out(out: Path, name: str, split: str, listing: SourceListing, channels: int, encoding: str,
                 overwrite: bool, source_path: Path | None, resume: bool = False
                 ) -> tuple[dict[str, Any] | None, list[Path]]:
    """Check OUT. Returns the existing manifest to extend (None for a fresh OUT) and the old files that
    `--overwrite` replaces: they are deleted only when the new run finalizes, never before work."""
    if source_path is not None:
        src, dst = source_path.resolve(), out.resolve()
        if dst == src or src in dst.parents:
            raise UsageError(f"OUT {out} is inside SOURCE {source_path}; SOURCE is read-only: choose another OUT")
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    leftovers = _leftovers(out, name, split)
    if leftovers and not resume:
        if not overwrite:
            raise UsageError(f"OUT {out} holds an interrupted run of split {split!r}; rerun the same command with "
                             "--resume to complete it, or pass --overwrite to start over")
        _delete(leftovers)
        leftovers = []
    entries = [p.name for p in out.iterdir() if p not in leftovers and not p.name.startswith(".tmp-")]
    if resume and manifest is None and leftovers:
        return None, []
    if manifest is None:
        if entries and not overwrite:
            raise UsageError(f"OUT {out} is not empty and has no {MANIFEST}; pass --overwrite to write into it anyway")
        return None, []
    same = (manifest.get("class_names") == listing.class_names and manifest.get("name") == name
            and manifest.get("channels") == channels and manifest.get("encoding") == encoding)
    if split in manifest["splits"] and resume and not overwrite:
        # an interrupted --overwrite of this split (its journal is here) still replaces the old one
        return manifest, _old_outputs(out, manifest, split) if journal_path(out, split).exists() else []
    if split in manifest["splits"] and not overwrite:
        raise UsageError(f"OUT {out} already has split {split!r}; pass --overwrite to replace it (or --split NAME for another)")
    if not same:
        if not overwrite:
            raise UsageError(
                f"OUT {out} holds dataset {manifest.get('name')!r} with classes {manifest.get('class_names')}, "
                f"{manifest.get('channels')} channels, {manifest.get('encoding')}; this export has {name!r} with "
                f"{listing.class_names}, {channels} channels, {encoding}. Another split can be added only when these "
                "match; pass --overwrite to replace the whole output")
        return None, _old_outputs(out, manifest, None)
    return manifest, _old_outputs(out, manifest, split) if split in manifest["splits"] else []


def _check_beam(fmt: str, resume: bool, beam_options: Sequence[str], paths: Sequence[str]) -> None:
    """--runner beam: what this version supports, checked before OUT is touched."""
    for path in paths:
        if re.match(r"^[a-z][a-z0-9+.-]*://", path):
            raise UsageError(f"{path}: URLs are not supported in this version; SOURCE and OUT must be paths every "
                             "Beam worker sees (local disk or a shared mount); see docs/beam.md")
    if importlib.util.find_spec("apache_beam") is None:
        raise UsageError("--runner beam needs Apache Beam, which is not installed: pip install 'augexport[beam]'")
    if fmt != "tfrecord":
        raise UsageError(f"--format {fmt} is not available with --runner beam in this version; accepted: tfrecord")
    if resume:
        raise UsageError("--resume is not available with --runner beam (a failed Beam run leaves nothing to resume); "
                         "rerun without it, adding --overwrite if OUT holds a partial run")
    from .beam import make_options, pipeline_flags  # noqa: PLC0415 - imports apache_beam

    make_options(pipeline_flags(beam_options))


def _old_outputs(out: Path, manifest: dict[str, Any], split: str | None) -> list[Path]:
    """Files augexport wrote for `split` (or for every split and the metadata when None)."""
    paths: list[Path] = []
    for s in [split] if split else list(manifest["splits"]):
        paths += split_files(out, manifest["splits"][s])
        paths.append(out / "images" / s)
    if split is None:
        paths += [out / meta for meta in ("dataset_info.json", "features.json", "label.labels.txt")]
    return paths


def export(source: str, out: str | os.PathLike[str], *, config: str | None = None,
           overrides: dict[str, Any] | None = None, labels: str | None = None, split: str | None = None,
           name: str | None = None, data_dir: str | None = None, fmt: str = "tfrecord", encoding: str = "jpeg",
           quality: int = 95, num_shards: int | None = None, shard_size: str | int | None = None,
           compression: str = "none", shuffle: bool = True, channels: int = 3, on_error: str = "skip",
           overwrite: bool = False, resume: bool = False, workers: int | None = None, batch_size: int = 16, device: str = "auto",
           runner: str = "local", beam_options: Sequence[str] | None = None,
           max_pixels: int = codec.DEFAULT_MAX_PIXELS, command: list[str] | None = None,
           progress: Callable[[int], Any] | None = None, on_start: Callable[[int], Any] | None = None,
           tta_set: dict[str, Any] | None = None, image_key: str | None = None,
           label_key: str | None = None) -> ExportResult:
    """Augment SOURCE and write shards (and optionally image files) into OUT. See DESIGN.md.
    `tta_set` ({"spec", "variants"}, from `augexport.tta.export_tta`): copy k renders variant k."""
    t0 = time.perf_counter()
    _check_choice("--format", fmt, FORMATS)
    _check_choice("--encoding", encoding, codec.ENCODINGS)
    _check_choice("--compression", compression, COMPRESSIONS)
    _check_choice("--on-error", on_error, ON_ERROR)
    _check_choice("--device", device, DEVICES)
    _check_choice("--runner", runner, RUNNERS)
    if channels not in (1, 3):
        raise UsageError(f"--channels {channels} is not accepted; accepted: 1, 3")
    if not 1 <= quality <= 100:
        raise UsageError(f"--quality {quality} is out of range; accepted: 1..100")
    if num_shards is not None and num_shards < 1:
        raise UsageError(f"--num-shards {num_shards} is not accepted; accepted: an integer >= 1")
    if num_shards is not None and shard_size is not None:
        raise UsageError("--num-shards and --shard-size are exclusive; pass one of them")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size} is not accepted; accepted: an integer >= 1")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise UsageError(f"--workers {workers} is not accepted; accepted: an integer >= 1")
    shard_bytes = parse_size(shard_size) if shard_size is not None else 256 << 20
    split = split or "train"
    base_split = output_split_name(split) if str(source).startswith("tfds:") else split
    if not re.fullmatch(r"[A-Za-z0-9_]+", base_split):
        raise UsageError(f"--split {split!r} is not a valid split name; accepted: letters, digits and _")
    if runner == "beam":
        _check_beam(fmt, resume, beam_options or [], [str(source), str(out)])

    pipeline = resolve_pipeline(config, overrides)
    dry_run(pipeline, channels)
    if runner == "beam" and device == "gpu":
        raise UsageError("--device gpu is not available with --runner beam in this version (Beam workers mix in "
                         "numpy); use --device cpu or auto")
    batch = resolve_device("cpu" if runner == "beam" else device, pipeline.mix is not None)
    out = Path(out)
    source_path = None if str(source).startswith("tfds:") else Path(source)
    created_out = False
    if source_path is None and not out.exists():
        out.mkdir(parents=True)
        created_out = True
    try:
        listing = open_source(source, labels=labels, name=name, split=split, data_dir=data_dir, channels=channels,
                              image_key=image_key, label_key=label_key,
                              spool_dir=out if source_path is None else None)
        ds_name = dataset_name(name or listing.name)
        for stale in out.glob(".tmp-tfds-spool-*") if source_path is None else ():
            if str(stale) != listing.spool:  # left by a killed run
                shutil.rmtree(stale, ignore_errors=True)
        manifest, replaced = _prepare_out(out, ds_name, base_split, listing, channels, encoding, overwrite,
                                          source_path, resume)
    except BaseException:
        if created_out and not any(p for p in out.iterdir() if not p.name.startswith(".tmp-tfds-spool-")):
            shutil.rmtree(out, ignore_errors=True)
        raise

    copies = pipeline.copy_indices()
    identity = {"pipeline": pipeline.to_spec(), "source": listing.location, "fingerprint": listing.fingerprint,
                "name": ds_name, "split": split, "format": fmt, "encoding": encoding, "quality": quality,
                "channels": channels, "num_shards": num_shards, "shard_bytes": None if num_shards else shard_bytes,
                "compression": compression, "shuffle": shuffle, "max_pixels": max_pixels}
    if tta_set is not None:
        identity["tta"] = tta_set
    done = (manifest or {}).get("splits", {}).get(base_split)
    interrupted = journal_path(out, base_split).exists()  # an unfinished run of this split takes precedence
    if resume and done is not None and not interrupted:
        if done.get("identity") != identity_key(identity):
            raise UsageError(f"--resume: split {base_split!r} in {out} was written with other arguments or another "
                             "source; use --overwrite to replace it")
        c = done["counts"]
        journal_path(out, base_split).unlink(missing_ok=True)  # killed after the manifest was written
        return ExportResult(out, base_split, c["source"], c["written"], c["skipped"], 0.0, done["shards"],
                            done.get("timings", {}).get("batch_stages", ""))
    finished, resume_last, state = load_for_resume(out, base_split, identity) if resume else ([], -1, {})
    journal = Journal(out, base_split, identity)
    if finished:
        journal.shards = json.loads(journal.path.read_text())["shards"][: len(finished)]
    images_key = identity_key(identity)
    if fmt in ("images", "both"):
        replaced = _adopt_images(out, base_split, images_key, resume and interrupted, replaced)
    if runner == "local":  # Beam runs are not resumable: a failed one removes its own temporaries
        journal.save()
    job = Job(pipeline.to_spec(), len(listing.class_names), channels, encoding, quality, max_pixels,
              keep_image=fmt in ("images", "both"), variants=tuple(tta_set["variants"]) if tta_set else ())
    errors = [tuple(e) for e in state.get("errors", [])] or list(listing.problems)
    seen_errors = {sid for sid, _ in errors}
    written, mixed = state.get("written", 0), state.get("mixed", 0)
    label_counts = state.get("label_counts") or [0] * len(listing.class_names)

    def shard_closed(_index: int, info: Any, last_planned: int) -> None:
        # snapshots, not the live lists: each shard's state must stay what it was when it closed
        journal.record(info, last_planned, {"written": written, "mixed": mixed, "label_counts": list(label_counts),
                                            "errors": [list(e) for e in errors]})

    stats = featurewise_stats(listing.items, pipeline, job) if needs_featurewise_stats(pipeline) else None

    def finish(shards: list[dict[str, Any]], written: int, mixed: int, label_counts: list[int],
               errors: list[tuple[str, str]], timings: dict[str, Any]) -> ExportResult:
        """Errors file, manifest entry, TFDS metadata, manifest: shared by both runners."""
        seconds = time.perf_counter() - t0
        errors_file = f"errors-{base_split}.jsonl"
        atomic_write(out / errors_file, "".join(json.dumps({"source_id": s, "error": e}, ensure_ascii=False) + "\n"
                                                for s, e in errors).encode("utf-8", "surrogateescape"))
        entry = {
            "command": command or [],
            "pipeline": pipeline.to_spec(),
            "seed": pipeline.seed,
            "source": {"kind": listing.kind, "location": listing.location, "fingerprint": listing.fingerprint,
                       "split": split if source_path is None else None},
            "format": fmt, "encoding": encoding, "quality": quality, "compression": compression, "shuffle": shuffle,
            "tfds_loadable": fmt != "images" and compression == "none",
            "identity": identity_key(identity),
            "shards": shards,
            "counts": {"source": len(listing.items), "written": written, "skipped": len(errors), "mixed": mixed},
            "label_counts": label_counts,
            "errors_file": errors_file,
            **({"tta": tta_set} if tta_set is not None else {}),
            **({"featurewise_stats": stats} if stats is not None else {}),
            "timings": {"seconds": round(seconds, 3), "images_per_s": round(len(listing.items) / seconds, 2) if seconds else None,
                        "workers": workers, "batch_size": batch_size, **timings},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        base = manifest or {"version": FORMAT_VERSION, "name": ds_name, "class_names": listing.class_names,
                            "channels": channels, "encoding": encoding, "splits": {}}
        base.update({"augexport_version": __version__, "command": entry["command"], "pipeline": entry["pipeline"],
                     "seed": pipeline.seed, "source": entry["source"]})
        base["splits"][base_split] = entry
        _write_tfds_metadata(out, base)
        write_manifest(out, base)
        journal.remove()  # only now: a run killed while finalizing stays resumable
        if listing.spool:  # the spilled TFDS split is not output: remove it now, not whenever gc finds the listing
            shutil.rmtree(listing.spool, ignore_errors=True)
        fsync_dir(out)
        return ExportResult(out, base_split, len(listing.items), written, len(errors), seconds, shards,
                            timings.get("batch_stages", ""))

    if runner == "beam":
        from .beam import run_export  # noqa: PLC0415 - Apache Beam only for --runner beam

        if errors and on_error == "fail":
            raise ExportFailed(f"{errors[0][0]}: {errors[0][1]} (--on-error fail)")
        got = run_export(listing, pipeline, job, out=out, name=ds_name, split=base_split, shuffle=shuffle,
                         num_shards=num_shards, shard_bytes=shard_bytes, compression=compression,
                         on_error=on_error, beam_options=list(beam_options or []),
                         before_finalize=lambda: _delete(replaced))
        errors += [e for e in got.errors if e[0] not in seen_errors]
        return finish(got.shards, got.written, got.mixed, got.label_counts, errors,
                      {"runner": "beam", "device": device, "batch_stages": batch.describe()})

    writer = ShardWriter(out, ds_name, base_split, planned_total=len(listing.items) * len(copies),
                         num_shards=num_shards, shard_bytes=shard_bytes, compression=compression,
                         on_shard_closed=shard_closed) if fmt != "images" else None
    if writer is not None and finished:
        writer.resume_from(finished)
    start_block = (resume_last + 1) // (BLOCK_ITEMS * len(copies)) if finished else 0
    images = ImageFolderWriter(out, base_split, images_key) if fmt in ("images", "both") else None
    collisions = colliding_ids((listing.class_names[it.label], it.source_id) for it in listing.items) if images else set()
    ext = codec.EXTENSIONS[encoding]
    if on_start:
        on_start(len(listing.items) - start_block * BLOCK_ITEMS)
    mixer = block_finisher(job, batch)
    try:
        if errors and on_error == "fail":
            raise ExportFailed(f"{errors[0][0]}: {errors[0][1]} (--on-error fail)")
        for rec in run(listing.items, pipeline, replace(job, defer_mix=mixer is not None), shuffle=shuffle,
                       workers=workers, batch_size=batch_size, on_progress=progress, start_block=start_block,
                       finish_block=mixer):
            if not isinstance(rec, Emitted):
                if rec.source_id not in seen_errors:
                    seen_errors.add(rec.source_id)
                    errors.append((rec.source_id, rec.error or "unknown error"))
                if on_error == "fail":
                    raise ExportFailed(f"{rec.source_id}: {rec.error} (--on-error fail; nothing was finalized)")
                continue
            if rec.planned_index <= resume_last:
                continue  # already in a kept shard
            if writer is not None:
                writer.write(rec.planned_index, rec.framed)
            if images is not None and rec.image is not None:
                images.write(image_relpath(base_split, listing.class_names[rec.label], rec.source_id, rec.copy, ext,
                                           collisions), rec.image)
            written += 1
            mixed += rec.mixed
            label_counts[rec.label] += 1
        _delete(replaced)  # --overwrite: the old split goes only now that the new one is complete
        shards = [s.to_json() for s in writer.finalize()] if writer is not None else []
        if images is not None:
            images.finalize()
    except OSError as exc:
        _abort(writer, images, journal)
        raise ExportFailed(f"write error in {out}: {exc.strerror or exc}; nothing was finalized") from None
    except (KeyboardInterrupt, Interrupted):
        if writer is not None:
            writer.abort(keep_finished=True)  # finished shards + journal stay for --resume
        raise
    except BaseException:
        _abort(writer, images, journal)
        raise
    device_timings: dict[str, Any] = {"device": device, "batch_stages": batch.describe()}
    if mixer is not None:
        device_timings["batch_stage_seconds"] = round(mixer.seconds, 3)
    return finish(shards, written, mixed, label_counts, errors, device_timings)


def tta(source: str, out: str | os.PathLike[str], *, variants: str | Sequence[str], **kw: Any) -> ExportResult:
    """Write a deterministic TTA variant set (see `augexport.tta.export_tta`)."""
    from .tta import export_tta  # noqa: PLC0415 - tta builds on export

    return export_tta(source, out, variants=variants, **kw)


def tta_merge(out: str | os.PathLike[str], split: str, predictions: Any, **kw: Any) -> Any:
    """Merge per-variant predictions of a TTA split (see `augexport.tta.merge`)."""
    from .tta import merge  # noqa: PLC0415

    return merge(out, split, predictions, **kw)


def _adopt_images(out: Path, split: str, key: str, resuming: bool, replaced: list[Path]) -> list[Path]:
    """Image folder on resume: a run killed after renaming its finished folder (and before the
    manifest) takes it back as its temporary folder; anything else left over is not this run's."""
    final, temp = out / "images" / split, temp_images_dir(out, split)
    if resuming and not temp.exists() and ImageFolderWriter.owner(final) == key:
        os.replace(final, temp)
        return [p for p in replaced if p != final]
    if not resuming and temp.exists():
        shutil.rmtree(temp)
    return replaced


def _abort(writer: ShardWriter | None, images: ImageFolderWriter | None, journal: Journal) -> None:
    if writer is not None:
        writer.abort()
    if images is not None:
        images.abort()
    journal.remove()


def _write_tfds_metadata(out: Path, manifest: dict[str, Any]) -> None:
    loadable = {s: {"shard_lengths": [sh["records"] for sh in e["shards"]], "num_bytes": sum(sh["bytes"] for sh in e["shards"])}
                for s, e in manifest["splits"].items() if e.get("tfds_loadable")}
    if not loadable:
        return
    write_metadata(out, manifest["name"], f"Augmented by augexport {__version__}; see {MANIFEST}.",
                   manifest["class_names"], manifest["channels"], manifest["encoding"], loadable)


# -- inspect -----------------------------------------------------------------------------------
def _open_shard(path: Path, compression: str):  # noqa: ANN202 - a binary file object
    return gzip.open(path, "rb") if compression == "gzip" else open(path, "rb")


def inspect(out: str | os.PathLike[str], verify: bool = False) -> dict[str, Any]:
    """Splits, shards, counts, label histogram, mixed fraction; `verify` re-hashes every shard
    against the manifest and re-reads every record (raises VerifyFailed listing every mismatch)."""
    out = Path(out)
    manifest = read_manifest(out)
    if manifest is None:
        raise UsageError(f"{out} has no {MANIFEST}: not an augexport output folder")
    problems: list[str] = []
    report: dict[str, Any] = {"out": str(out), "name": manifest["name"], "class_names": manifest["class_names"], "splits": {}}
    for split, entry in sorted(manifest["splits"].items()):
        labels = [0] * len(manifest["class_names"])
        records = mixed = 0
        for shard in entry["shards"]:
            path = out / shard["file"]
            if not path.exists():
                problems.append(f"{shard['file']}: missing")
                continue
            if verify:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                if h.hexdigest() != shard["sha256"]:
                    problems.append(f"{shard['file']}: sha256 {h.hexdigest()[:12]}… != manifest {shard['sha256'][:12]}…")
                    continue
            n = 0
            try:
                with _open_shard(path, entry.get("compression", "none")) as f:
                    for data in read_tfrecords(f, verify=verify):
                        ex = decode_example(data)
                        labels[ex["label"][0]] += 1
                        mixed += bool(ex["mix_lambda"][0] < 1.0)
                        n += 1
            except (ValueError, OSError, EOFError, IndexError, KeyError) as exc:
                problems.append(f"{shard['file']}: unreadable: {exc}")
            if n != shard["records"]:
                problems.append(f"{shard['file']}: {n} records, manifest says {shard['records']}")
            records += n
        report["splits"][split] = {"shards": len(entry["shards"]), "records": records, "counts": entry["counts"],
                                   "label_histogram": dict(zip(manifest["class_names"], labels, strict=True)),
                                   "mixed_fraction": mixed / records if records else 0.0,
                                   "compression": entry.get("compression", "none"),
                                   "tfds_loadable": entry.get("tfds_loadable", False)}
    report["problems"] = problems
    if verify and problems:
        raise VerifyFailed(f"{out}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return report


def format_inspect(report: dict[str, Any]) -> str:
    lines = [f"{report['out']}: dataset {report['name']!r}, {len(report['class_names'])} classes"]
    for split, s in report["splits"].items():
        c = s["counts"]
        lines.append(f"  split {split}: {s['records']} records in {s['shards']} shard(s); source {c['source']}, "
                     f"skipped {c['skipped']}; mixed {s['mixed_fraction']:.1%}; compression {s['compression']}"
                     f"{'' if s['tfds_loadable'] else ' (not TFDS-loadable)'}")
        width = max((len(k) for k in s["label_histogram"]), default=0)
        for cls, n in s["label_histogram"].items():
            lines.append(f"    {cls:<{width}}  {n}")
    for p in report["problems"]:
        lines.append(f"  PROBLEM: {p}")
    return "\n".join(lines)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
