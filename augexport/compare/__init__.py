"""`augexport compare`: the tutorials' with/without-augmentation experiment as one command.

The source is split by a seeded hash of source_id (before any augmentation) into train and val
class folders under OUT/split/. Each variant's pipeline exports the same training images into its
own split of one augexport dataset (OUT/dataset, split `train_<variant>`); val is exported once,
with no stages. One small Keras CNN is trained per variant and repeat on the soft labels, with
the same seeds and the same number of steps per epoch for every variant, and validated on val.
OUT receives compare.json, compare.md and compare.png (see `report`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..classes import MAX_COPIES
from ..errors import Interrupted, UsageError
from ..pipeline import parse_image_size
from ..sources.open import check_not_empty
from ..targets import make_out_dir, remove_made_parents, resolved
from .split import DIGITS, split_items

# Digits: no flips (a mirrored 2 or 5 is not a digit), small rotations, shifts and zooms; fill with
# the black background (`nearest` would smear strokes that touch the border).
KERAS_DIGITS = {"rotation_range": 15, "width_shift_range": 0.1, "height_shift_range": 0.1, "zoom_range": 0.1,
                "fill_mode": "constant", "cval": 0.0}
BUILTIN_VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"copies": 0},
    "keras-basic": {"copies": 4, "stages": [{"keras": KERAS_DIGITS}]},
    "keras+cutmix": {"copies": 4, "stages": [{"keras": KERAS_DIGITS}], "mix": {"method": "cutmix", "alpha": 1.0, "p": 0.5}},
    "keras+mixup": {"copies": 4, "stages": [{"keras": KERAS_DIGITS}], "mix": {"method": "mixup", "alpha": 0.4, "p": 0.5}},
}
DIGITS_TRAIN_PER_CLASS = 20  # sklearn:digits trains on 200 of its 1,797 images unless told otherwise
OWN_ENTRIES = ("source", "split", "dataset", "compare.json", "compare.md", "compare.png")
MARKER = ".augexport-compare"
KEPT_PREFIX = ".augexport-compare-old-"  # an earlier run's entries, kept until this run is under way
# the CNN's widest layer has 4x --filters channels: 1024 is already a large model for this test
MAX_FILTERS = 1024
MAX_LEARNING_RATE = 10.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass
class Variant:
    """One pipeline to compare: a file (`config`) or built-in data (`spec`), plus the command's overrides."""

    name: str
    config: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def split(self) -> str:
        return "train_" + re.sub(r"[^A-Za-z0-9]+", "_", self.name).strip("_").lower()


@dataclass
class CompareResult:
    out: Path
    report: dict[str, Any]
    table: str

    def summary(self) -> str:
        return (self.table + f"augexport compare: {len(self.report['variants'])} variants x "
                f"{self.report['repeats']} repeat(s), {self.report['seconds']} s -> {self.out}/compare.png, "
                f"compare.json, compare.md (data: {self.out}/dataset)")


def parse_variants(pipelines: Sequence[str]) -> list[Variant]:
    """`--pipeline a.yaml` (named by its stem) or `--pipeline name=path`; none given: the built-in set."""
    if not pipelines:
        return [Variant(name, spec=dict(spec)) for name, spec in BUILTIN_VARIANTS.items()]
    variants: list[Variant] = []
    for text in pipelines:
        name, sep, path = text.partition("=")
        if not sep or "/" in name:
            name, path = Path(text).stem, text
        if not _NAME.match(name):
            raise UsageError(f"--pipeline {text!r}: variant name {name!r} is not accepted; accepted: letters, digits "
                             "and _ . + - (name=path names it explicitly)")
        if not Path(path).is_file():
            raise UsageError(f"--pipeline {text!r}: {path} does not exist or is not a file")
        variants.append(Variant(name, config=path))
    if len(variants) < 2:
        raise UsageError(f"--pipeline: {len(variants)} given; compare needs two or more (or none for the built-in "
                         f"set: {', '.join(BUILTIN_VARIANTS)})")
    splits = [v.split for v in variants]
    for v in variants:
        if splits.count(v.split) > 1:
            raise UsageError(f"--pipeline: two variants are named like {v.name!r}; name them apart with name=path")
    return variants


def resolve_variants(variants: list[Variant], seed: int, copies: int | None, image_size: str | None) -> list[Any]:
    """Validate every pipeline now (exit 2 before any work); `--copies` applies to variants that augment."""
    from ..pipeline import resolve_pipeline

    pipelines = []
    for v in variants:
        v.overrides = {**v.spec, "seed": seed, "image_size": image_size}
        try:
            pipeline = resolve_pipeline(v.config, v.overrides)
            if copies is not None and (pipeline.stages or pipeline.mix):
                v.overrides["copies"] = copies
                pipeline = resolve_pipeline(v.config, v.overrides)
        except UsageError as exc:
            raise UsageError(f"--pipeline {v.config or v.name}: {exc}") from None
        pipelines.append(pipeline)
    return pipelines


def check_settings(epochs: int, repeats: int, val_fraction: float, train_per_class: int | None, batch_size: int,
                   filters: int, learning_rate: float, copies: int | None, workers: int | None = None) -> None:
    for flag, value, ok, accepted in (
            ("--workers", workers, workers is None or workers >= 1, "an integer >= 1"),
            ("--epochs", epochs, epochs >= 1, "an integer >= 1"),
            ("--repeats", repeats, repeats >= 1, "an integer >= 1"),
            ("--val-fraction", val_fraction, 0 < val_fraction < 1, "a number in (0, 1)"),
            ("--train-per-class", train_per_class, train_per_class is None or train_per_class >= 1, "an integer >= 1"),
            ("--batch-size", batch_size, batch_size >= 1, "an integer >= 1"),
            ("--filters", filters, 1 <= filters <= MAX_FILTERS, f"an integer in [1, {MAX_FILTERS}]"),
            ("--learning-rate", learning_rate, 0 < learning_rate <= MAX_LEARNING_RATE,
             f"a number in (0, {MAX_LEARNING_RATE:g}]"),
            ("--copies", copies, copies is None or 0 <= copies <= MAX_COPIES, f"an integer in [0, {MAX_COPIES}]")):
        if not ok:
            raise UsageError(f"{flag} {value} is not accepted; accepted: {accepted}")


def check_dependencies(source: str) -> None:
    """TensorFlow, Keras and matplotlib (and scikit-learn for the digits) before any work."""
    needed = ["tensorflow", "keras", "matplotlib"] + (["sklearn"] if source == DIGITS else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"augexport compare needs {', '.join(missing)}, not installed: "
                         "pip install 'augexport[cpu,compare]'")


def check_source(source: str, data_dir: str | None) -> Any:
    """A folder source is listed now (its listing is returned); a TFDS builder is opened, not read
    (reading spills into OUT, which does not exist yet); the digits need nothing."""
    if source == DIGITS:
        return None
    from ..sources.arrays import is_array_source

    if source.startswith("sklearn:") or is_array_source(source):
        raise UsageError(f"SOURCE {source!r} is not accepted by compare; accepted: a class-folder directory, "
                         f"tfds:NAME, {DIGITS}")
    if source.startswith("tfds:"):
        from ..sources.tfds import open_builder

        open_builder(source[5:], data_dir)
        return None
    from ..sources.folder import list_folder

    return list_folder(source)


def check_out(out: Path, source: str, overwrite: bool) -> None:
    """OUT can take this run: not inside SOURCE, and empty, new, or (--overwrite) an earlier run's."""
    if source != DIGITS and not source.startswith("tfds:") and Path(source).is_dir():
        src, dst = resolved(source, "SOURCE"), resolved(out, "OUT")
        if dst == src or src in dst.parents:
            raise UsageError(f"OUT {out} is inside SOURCE {source}; SOURCE is read-only: choose another OUT")
        if dst in src.parents:  # --overwrite would remove it with the earlier run's entries
            raise UsageError(f"SOURCE {source} is inside OUT {out}; choose an OUT outside it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"OUT {out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UsageError(f"OUT {out} is not empty; pass --overwrite to replace a previous compare run")
        if not (out / MARKER).exists():
            raise UsageError(f"--overwrite: OUT {out} is not empty and holds no earlier compare run; choose an empty OUT")


@dataclass
class OutState:
    """What `prepare_out` changed, so that a usage error found later leaves OUT as it was."""

    out: Path
    created: Path | None  # the topmost folder this run made (OUT or a parent), else None
    kept: Path | None  # an earlier run's entries (--overwrite), moved aside


def prepare_out(out: Path) -> OutState:
    """An empty (or new) OUT that `check_out` accepted; an earlier compare run's own entries in it
    (--overwrite) are moved aside, and removed by `settle_out` once this run is under way."""
    created = make_out_dir(out)  # a place that cannot hold OUT is exit 2 here
    for stale in out.glob(KEPT_PREFIX + "*"):  # left by a run interrupted while it started
        shutil.rmtree(stale, ignore_errors=True)
    kept = None
    own = [out / name for name in (*OWN_ENTRIES, MARKER) if (out / name).exists() or (out / name).is_symlink()]
    if own:
        kept = Path(tempfile.mkdtemp(prefix=KEPT_PREFIX, dir=out))
        for path in own:
            os.rename(path, kept / path.name)
    (out / MARKER).write_text("written by augexport compare; --overwrite replaces this folder's compare entries\n")
    return OutState(out, created, kept)


def undo_out(state: OutState) -> None:
    """OUT as `prepare_out` found it: this run's entries gone, an earlier run's put back."""
    out = state.out
    if state.created is not None:
        shutil.rmtree(out, ignore_errors=True)
        remove_made_parents(out, state.created)
        return
    for name in (*OWN_ENTRIES, MARKER):
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if state.kept is not None:
        for path in state.kept.iterdir():
            os.rename(path, out / path.name)
        state.kept.rmdir()


def settle_out(state: OutState) -> None:
    if state.kept is not None:
        shutil.rmtree(state.kept, ignore_errors=True)


def check_variant_classes(variants: list[Variant], pipelines: list[Any], class_names: list[str]) -> None:
    """A pipeline's `classes:` names the source's classes, as export checks it."""
    from ..classes import check_class_names

    for v, pipeline in zip(variants, pipelines, strict=True):
        try:
            check_class_names(pipeline.classes, class_names, pipeline.source)
        except UsageError as exc:
            raise UsageError(f"--pipeline {v.config or v.name}: {exc}") from None


def check_one_size(variants: list[Variant], pipelines: list[Any]) -> None:
    """One model input size: every variant's image_size is the same (or --image-size sets it)."""
    sizes = {v.name: p.image_size for v, p in zip(variants, pipelines, strict=True)}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name}: {'x'.join(map(str, size)) if size else 'none'}" for name, size in sizes.items())
        raise UsageError(f"--pipeline: the variants' image_size differ ({listed}); one model compares them, "
                         "so give them one image_size, or pass --image-size")


def run_compare(source: str | None, out: str | Path, *, pipelines: Sequence[str] = (), epochs: int = 20,
                repeats: int = 3, copies: int | None = None, val_fraction: float = 0.2,
                train_per_class: int | None = None, image_size: str | None = None, seed: int = 0,
                batch_size: int = 32, filters: int = 16, learning_rate: float = 1e-3, split: str | None = None,
                data_dir: str | None = None, workers: int | None = None, overwrite: bool = False,
                progress: bool = False, command: list[str] | None = None,
                log: Callable[[str], Any] | None = None) -> CompareResult:
    """Export every variant, train and validate, write the report. See the module docstring."""
    from ..sources.open import check_tfds_flags
    from .experiment import Experiment

    if source is None:
        source = DIGITS
    else:
        check_not_empty(source, f"a class-folder directory, tfds:NAME, or no SOURCE for {DIGITS}")
    if source == DIGITS and train_per_class is None:
        train_per_class = DIGITS_TRAIN_PER_CLASS
    check_settings(epochs, repeats, val_fraction, train_per_class, batch_size, filters, learning_rate, copies, workers)
    parse_image_size(image_size, "--image-size")
    variants = parse_variants(pipelines)
    variant_pipelines = resolve_variants(variants, seed, copies, image_size)
    check_one_size(variants, variant_pipelines)
    check_dependencies(source)
    from .train import quiet_tensorflow

    quiet_tensorflow()  # before anything imports TensorFlow (a tfds source, or mixing on --device auto)
    check_tfds_flags(source, split, data_dir)
    listing = check_source(source, data_dir)
    out = Path(out)
    check_out(out, source, overwrite)
    if listing is not None:  # a folder: its classes and split are checked before OUT is made
        check_variant_classes(variants, variant_pipelines, listing.class_names)
        split_items(listing, seed, val_fraction, train_per_class)
    state = prepare_out(out)
    t0 = time.perf_counter()
    exp = Experiment(source, out, variants, variant_pipelines, seed=seed, val_fraction=val_fraction,
                     train_per_class=train_per_class, split=split, data_dir=data_dir, workers=workers,
                     command=command or ["augexport.compare.run_compare"], log=log or (lambda _msg: None),
                     check_classes=lambda names: check_variant_classes(variants, variant_pipelines, names))
    try:
        exp.prepare(listing)
    except BaseException:  # the digits or a TFDS split, read into OUT, cannot be split (or Ctrl-C): OUT as it was
        undo_out(state)
        raise
    settle_out(state)
    try:
        exp.export_all()
        exp.train_all(epochs=epochs, repeats=repeats, batch_size=batch_size, filters=filters,
                      learning_rate=learning_rate, progress=progress)
        report, table = exp.write_report(round(time.perf_counter() - t0, 1))
    except (KeyboardInterrupt, Interrupted) as exc:
        exc.compare_partial = True  # type: ignore[attr-defined]  # what the CLI tells the user
        raise
    return CompareResult(out, report, table)


__all__ = ["BUILTIN_VARIANTS", "CompareResult", "Variant", "parse_variants", "run_compare"]
