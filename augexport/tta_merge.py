"""`augexport tta-merge`: merge a model's per-variant predictions of a TTA split back to one
prediction per source image. Reads the split's records (no TensorFlow), checks that the
predictions line up with them, and merges each image's K rows.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .objstore import open_outdir
from .outdir import write_file_atomic
from .reader import load_split, split_examples
from .sinks.label_rows import RowWriter
from .targets import check_output_file, resolved

METHODS = ("mean", "vote", "geomean")
_EPS = 1e-12

@dataclass
class MergeResult:
    split: str
    method: str
    variants: list[str]
    class_names: list[str]
    source_ids: list[str]
    labels: np.ndarray  # (N,), -1 when unknown
    merged: np.ndarray  # (N, C) merged scores (mean/geomean: probabilities; vote: vote fractions)
    predicted: np.ndarray  # (N,)
    accuracy: float | None
    variant_accuracy: dict[str, float] = field(default_factory=dict)
    output: Path | None = None

    def summary(self) -> str:
        n, k = len(self.source_ids), len(self.variants)
        lines = [f"augexport tta-merge: {n} images x {k} variants, method {self.method}"]
        if self.accuracy is not None:
            lines.append(f"  top-1 accuracy, merged:   {self.accuracy:.4f}")
            if "identity" in self.variant_accuracy:
                lines.append(f"  top-1 accuracy, identity: {self.variant_accuracy['identity']:.4f}")
        else:
            lines.append("  no accuracy: the split's labels are unknown")
        if self.output is not None:
            lines.append(f"  wrote {self.output}")
        return "\n".join(lines)


def read_split_rows(out: str | os.PathLike[str], split: str) -> tuple[dict[str, Any], dict[str, Any], list[tuple[str, int, str, int]]]:
    """(manifest, split entry, [(source_id, copy, variant, label)] in record order) of a TTA split."""
    outdir = open_outdir(out)
    outdir.prepare()
    manifest, entry = load_split(outdir, split)
    if "tta" not in entry:
        raise UsageError(f"split {split!r} of {out} is not a TTA split (it was written by `augexport export`); "
                         "write one with `augexport tta`")
    if not entry["shards"]:
        raise UsageError(f"split {split!r} of {out} has no TFRecord shards (written with --format images?)")
    try:
        rows = [(ex["source_id"][0].decode("utf-8", "surrogateescape"), ex["copy"][0], ex["variant"][0].decode("utf-8"),
                 ex["label"][0]) for ex in split_examples(outdir, entry)]
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"cannot read split {split!r} of {out}: {exc}") from None
    return manifest, entry, rows


def group_rows(rows: list[tuple[str, int, str, int]], names: list[str]) -> tuple[list[str], np.ndarray]:
    """Check that records come in consecutive groups of K (copy 0..K-1, variant names in order)."""
    k = len(names)
    if len(rows) % k:
        raise UsageError(f"the split has {len(rows)} records, not a multiple of its {k} variants")
    ids, labels = [], []
    for g in range(len(rows) // k):
        group = rows[g * k : (g + 1) * k]
        sid = group[0][0]
        for j, (rid, copy, variant, _label) in enumerate(group):
            if rid != sid or copy != j or variant != names[j]:
                raise UsageError(f"record {g * k + j} is ({rid!r}, copy {copy}, {variant!r}); expected ({sid!r}, "
                                 f"copy {j}, {names[j]!r}): the split's records are not consecutive groups of {k} "
                                 "variants per image")
        ids.append(sid)
        labels.append(group[0][3])
    return ids, np.asarray(labels, dtype=np.int64)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def merge_scores(probs: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, C) probabilities -> merged (N, C) scores and predicted classes (N,).

    mean: arithmetic mean. geomean: exp(mean(log p)), renormalised to sum 1. vote: each variant
    votes for its argmax; scores are vote fractions; ties go to the tied class with the highest
    mean probability, then to the lowest class index."""
    if method not in METHODS:
        raise UsageError(f"--method {method!r} is not accepted; accepted: {', '.join(METHODS)}")
    mean = probs.mean(axis=1)
    if method == "mean":
        return mean, mean.argmax(axis=1)
    if method == "geomean":
        g = np.exp(np.log(np.clip(probs, _EPS, None)).mean(axis=1))
        g /= g.sum(axis=1, keepdims=True)
        return g, g.argmax(axis=1)
    n, k, c = probs.shape
    votes = np.zeros((n, c), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(n), k), probs.argmax(axis=2).ravel()), 1)
    tied = votes == votes.max(axis=1, keepdims=True)
    predicted = np.where(tied, mean, -np.inf).argmax(axis=1)  # argmax takes the lowest index on equality
    return votes / k, predicted


def _load_predictions(predictions: np.ndarray | str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """The predictions as float64, and how messages name them (the file, or "predictions")."""
    what = "predictions"
    if isinstance(predictions, (str, os.PathLike)):
        what = f"--predictions {predictions}"
        try:
            with open(predictions, "rb") as f:
                if f.read(6) != b"\x93NUMPY":
                    raise UsageError(f"{what} is not a .npy file; accepted: an array saved with np.save, one row "
                                     "per record")
            predictions = np.load(predictions, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise UsageError(f"{what}: cannot read a .npy array: {exc}") from None
    raw = np.asarray(predictions)
    if raw.dtype.kind not in "biuf":
        raise UsageError(f"{what} have dtype {raw.dtype}; accepted: real numbers (probabilities or --logits)")
    return raw.astype(np.float64), what


def _check_shape(preds: np.ndarray, what: str, split: str, n_rows: int, k: int, classes: list[str]) -> None:
    """One finite row per record (n_rows = N·K), one column per class."""
    if preds.ndim != 2 or preds.shape[1] < 1:
        raise UsageError(f"{what} have shape {preds.shape}; expected 2-D (N·K, C) = ({n_rows}, C): one row "
                         "per record in record order")
    if preds.shape[0] != n_rows:
        raise UsageError(f"{what} have {preds.shape[0]} rows, but split {split!r} has N·K = {n_rows // k}·{k} "
                         f"= {n_rows} records (read the split in order: shuffle_files=False, no shuffle)")
    if preds.shape[1] != len(classes):
        raise UsageError(f"{what} have {preds.shape[1]} columns, but split {split!r} has {len(classes)} classes "
                         f"({', '.join(classes[:8])}{', ...' if len(classes) > 8 else ''}): column j must be the "
                         "score of class j, in the order of the manifest's class_names")
    if not np.isfinite(preds).all():
        raise UsageError(f"{what} contain NaN or infinite values")


def _check_output(output: Path, out: Path, predictions: object) -> None:
    """-o is a new file: not the predictions it merges, not inside OUT (whose files augexport names
    and `inspect --verify` checks)."""
    check_output_file(output, "-o")
    dest = resolved(output, "-o")
    if isinstance(predictions, (str, os.PathLike)) and resolved(predictions, "--predictions") == dest:
        raise UsageError(f"-o {output} is the --predictions file; give another file name")
    if resolved(out, "OUT") in dest.parents:
        raise UsageError(f"-o {output} is inside OUT {out}, whose files are augexport's; give a file outside it")


def merge(out: str | os.PathLike[str], split: str, predictions: np.ndarray | str | os.PathLike[str], *,
          method: str = "mean", logits: bool = False, output: str | os.PathLike[str] | None = None) -> MergeResult:
    """Merge per-variant predictions (N·K × C, in record order) of TTA split `split` of OUT."""
    if method not in METHODS:
        raise UsageError(f"--method {method!r} is not accepted; accepted: {', '.join(METHODS)}")
    if output is not None and Path(output).suffix.lower() not in (".csv", ".npy"):
        raise UsageError(f"-o {output}: accepted: a .csv or .npy file name")
    out = Path(out)
    if output is not None:
        _check_output(Path(output), out, predictions)
    manifest, entry, rows = read_split_rows(out, split)
    if not rows:
        raise UsageError(f"split {split!r} of {out} has no records (every source image was skipped: see its "
                         "errors file), so there is nothing to merge")
    names = [v["name"] for v in entry["tta"]["variants"]]
    preds, what = _load_predictions(predictions)
    k, classes = len(names), manifest["class_names"]
    _check_shape(preds, what, split, len(rows), k, classes)
    ids, labels = group_rows(rows, names)
    if logits:
        probs = softmax(preds)
    elif (preds < 0).any():
        raise UsageError(f"{what} have negative values, so they are not probabilities; pass --logits")
    elif (preds > 1 + 1e-5).any():  # a float32 softmax may round a hair above 1
        raise UsageError(f"{what} have values above 1 (max {float(preds.max()):g}), so they are not probabilities; "
                         "pass --logits")
    else:
        probs = preds
    probs = probs.reshape(len(ids), k, -1)
    merged, predicted = merge_scores(probs, method)
    comparable = bool((labels >= 0).all())  # a split always has records here
    accuracy = float((predicted == labels).mean()) if comparable else None
    per_variant = ({name: float((probs[:, j].argmax(axis=1) == labels).mean()) for j, name in enumerate(names)}
                   if comparable else {})
    result = MergeResult(split, method, names, classes, ids, labels, merged, predicted, accuracy, per_variant)
    if output is not None:
        result.output = Path(output)
        try:
            _write(result, result.output)
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot write: {exc.strerror or exc}") from None
    return result


def _write(result: MergeResult, path: Path) -> None:
    if path.suffix.lower() == ".npy":
        buf = io.BytesIO()
        np.save(buf, result.merged.astype(np.float32))
        write_file_atomic(path, buf.getvalue())
        return
    cols = result.class_names
    text = io.StringIO()
    w = RowWriter(text)  # a source id holding "\r" is quoted
    w.writerow(["source_id", "label", "predicted", *cols])
    for sid, label, pred, row in zip(result.source_ids, result.labels, result.predicted, result.merged, strict=True):
        w.writerow([sid, int(label), int(pred), *(f"{x:.6g}" for x in row)])
    write_file_atomic(path, text.getvalue().encode("utf-8", "surrogateescape"))
