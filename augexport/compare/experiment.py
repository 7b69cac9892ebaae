"""The steps of one comparison, in order: split the source, export, train, report."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ExportFailed
from ..naming import dataset_name
from ..options import ExportOptions
from ..outdir import OutDir
from ..reader import load_split, split_examples
from ..run import ExportResult, ExportRun
from ..sources import SourceListing
from ..sources.open import open_source
from .report import (
    DIGITS_ROUND,
    accuracy_summary,
    markdown_table,
    write_json,
    write_markdown,
    write_png,
)
from .split import DIGITS, Split, materialise, split_items, write_digits

VAL = "val"


def _some(result: ExportResult) -> ExportResult:
    """A split with no readable record leaves nothing to train or validate on."""
    if result.written == 0:
        raise ExportFailed(f"split {result.split!r} of {result.out} has no readable record ({result.skipped} "
                           f"skipped: see {result.out}/errors-{result.split}.jsonl); nothing to compare")
    return result


class Experiment:
    def __init__(self, source: str, out: Path, variants: list[Any], pipelines: list[Any], *, seed: int,
                 val_fraction: float, train_per_class: int | None, split: str | None, data_dir: str | None,
                 workers: int | None, command: list[str], log: Callable[[str], Any],
                 check_classes: Callable[[list[str]], None] = lambda _names: None) -> None:
        self.source, self.out, self.variants, self.pipelines = source, out, variants, pipelines
        self.seed, self.val_fraction, self.train_per_class = seed, val_fraction, train_per_class
        self.tfds_split, self.data_dir, self.workers, self.log = split, data_dir, workers, log
        self.command, self.check_classes = command, check_classes
        self.dataset = out / "dataset"
        self.exports: dict[str, ExportResult] = {}
        self.runs: dict[str, list[Any]] = {}
        self.settings: Any = None
        self.steps_per_epoch = 0

    # -- split -------------------------------------------------------------------------------
    def _listing(self) -> SourceListing:
        if self.source == DIGITS:
            self.log(f"writing {DIGITS} as PNG class folders into {self.out / 'source'}")
            return open_source(str(write_digits(self.out / "source")), name="digits")
        return open_source(self.source, split=self.tfds_split, data_dir=self.data_dir, spool_dir=self.out)

    def prepare(self, listing: SourceListing | None = None) -> None:
        """Source (listed here unless given) -> source-disjoint train/val class folders under OUT/split/."""
        listing = listing or self._listing()
        self.check_classes(listing.class_names)
        self.name = dataset_name(listing.name)
        self.class_names = listing.class_names
        self.split: Split = split_items(listing, self.seed, self.val_fraction, self.train_per_class)
        from_folder = listing.kind != "tfds"
        materialise(self.split.train, self.split.classes, self.out / "split" / "train", from_folder)
        materialise(self.split.val, self.split.classes, self.out / "split" / VAL, from_folder)
        self.log(f"split: {len(self.split.train)} training and {len(self.split.val)} validation source images")

    # -- export ------------------------------------------------------------------------------
    def _export(self, folder: str, split: str, config: str | None, overrides: dict[str, Any]) -> ExportResult:
        options = ExportOptions(config=config, overrides=overrides, split=split, name=self.name, encoding="png",
                                workers=self.workers, command=self.command)
        return ExportRun(str(self.out / "split" / folder), self.dataset, options).execute()

    def export_all(self) -> None:
        """val once with no stages, then every variant's training split, into one augexport dataset."""
        sizes = {p.image_size for p in self.pipelines}  # val is resized like training when all variants agree
        common = sizes.pop() if len(sizes) == 1 else None
        image_size = list(common) if common else None
        self.log(f"exporting {VAL} (no augmentation)")
        self.exports[VAL] = _some(self._export(VAL, VAL, None, {"seed": self.seed, "copies": 0, "image_size": image_size}))
        for v in self.variants:
            self.log(f"exporting {v.split} ({v.config or 'built-in'})")
            self.exports[v.split] = _some(self._export("train", v.split, v.config, v.overrides))

    def _files(self, split: str) -> list[Path]:
        return [self.dataset / s["file"] for s in self.exports[split].shards]

    def _image_size(self) -> tuple[int, int]:
        """The model's input: the pipelines' image_size, else the first validation record's size."""
        size = self.pipelines[0].image_size
        if size:
            return size
        from PIL import Image

        outdir = OutDir(self.dataset)
        first = next(split_examples(outdir, load_split(outdir, VAL)[1]))
        with Image.open(io.BytesIO(first["image"][0])) as img:
            return img.height, img.width

    # -- train -------------------------------------------------------------------------------
    def train_all(self, *, epochs: int, repeats: int, batch_size: int, filters: int, learning_rate: float,
                  progress: bool) -> None:
        """Every variant, `repeats` seeds each (the same seeds for every variant), the same steps per epoch:
        one pass over the largest training split, so a smaller split is seen several times per epoch."""
        from .train import TrainSettings, train_once

        self.settings = TrainSettings(epochs, batch_size, filters, learning_rate, self._image_size(),
                                      len(self.class_names), progress)
        most = max(self.exports[v.split].written for v in self.variants)
        self.steps_per_epoch = math.ceil(most / batch_size)
        for v in self.variants:
            self.runs[v.name] = []
            for r in range(repeats):
                label = f"{v.name} seed {self.seed + r}"
                self.runs[v.name].append(train_once(self._files(v.split), self.exports[v.split].written,
                                                    self._files(VAL), self.exports[VAL].written, self.settings,
                                                    self.seed + r,
                                                    self.steps_per_epoch, label))

    # -- report ------------------------------------------------------------------------------
    def _variant_entry(self, v: Any, pipeline: Any) -> dict[str, Any]:
        runs = self.runs[v.name]
        return {"name": v.name, "split": v.split, "pipeline_file": v.config, "pipeline": pipeline.to_spec(),
                "final_val_accuracy": accuracy_summary([r.val_accuracy[-1] for r in runs]),
                "val_accuracy_per_epoch": [[round(a, DIGITS_ROUND) for a in r.val_accuracy] for r in runs],
                "epochs": self.settings.epochs, "repeats": len(runs), "seeds": [r.seed for r in runs],
                "train_images": len(self.split.train), "train_records": self.exports[v.split].written,
                "seconds": {"export": round(self.exports[v.split].seconds, 1),
                            "train": round(sum(r.seconds for r in runs), 1)}}

    def write_report(self, seconds: float) -> tuple[dict[str, Any], str]:
        s = self.settings
        report = {
            "source": self.source, "command": self.command, "seed": self.seed, "seconds": seconds,
            "dataset": str(self.dataset), "class_names": self.class_names,
            "split": {"val_fraction": self.val_fraction, "train_per_class": self.train_per_class,
                      "train_images": len(self.split.train), "val_images": len(self.split.val),
                      "val_records": self.exports[VAL].written, "by": "sha256(seed, source_id)"},
            "model": {"kind": "cnn", "filters": s.filters, "image_size": list(s.image_size), "batch_size": s.batch_size,
                      "optimizer": "adam", "learning_rate": s.learning_rate, "loss": "categorical_crossentropy"},
            "repeats": len(next(iter(self.runs.values()))),
            "training_seeds": [r.seed for r in next(iter(self.runs.values()))],
            "steps_per_epoch": self.steps_per_epoch,
            "variants": [self._variant_entry(v, p) for v, p in zip(self.variants, self.pipelines, strict=True)],
        }
        report = write_json(self.out / "compare.json", report)
        write_markdown(self.out / "compare.md", report)
        write_png(self.out / "compare.png", report)
        return report, markdown_table(report)
