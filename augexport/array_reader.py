"""`augexport.load_arrays(OUT, split)`: a split back as numpy arrays, in record order, for training
from arrays (the Keras `fit(x, y)` workflow) instead of a `tf.data` pipeline.

Records are read with the one shard reader (`reader.split_examples`); a split written with
`--format images` (no shards) is read from its `images/SPLIT/labels.csv` and image files instead.
Every image is decoded with the output's channel count; all must have one size (export with
`--image-size` when the sources differ). Memory: the returned arrays, plus one record at a time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import codec
from .errors import DecodeError, UsageError, VerifyFailed
from .outdir import OutDir
from .reader import load_split, split_examples
from .sinks.images import read_labels_rows


def _records(outdir: OutDir, entry: dict[str, Any], split: str,
             classes: int) -> Iterator[tuple[bytes, np.ndarray, int, str]]:
    """(encoded image, soft label, label, where it is) of every record in record order."""
    if entry["shards"]:
        for ex in split_examples(outdir, entry):
            where = "record of " + ex["source_id"][0].decode("utf-8", "surrogateescape")
            yield ex["image"][0], ex["soft_label"], int(ex["label"][0]), where
        return
    images = entry.get("images")
    if not images:
        raise UsageError(f"split {split!r} has neither shards nor an image folder")
    folder = images["dir"]
    rows = read_labels_rows(outdir, f"{folder}/{images['labels_file']}")
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except ValueError as exc:  # a damaged labels.csv: the output is not what its manifest describes
            raise VerifyFailed(f"{outdir}: {exc}") from None
        path = f"{folder}/{row.file}"
        data = outdir.read_bytes(path)
        if not 0 <= row.label < classes or hashlib.sha256(data).hexdigest() != row.sha256:
            raise VerifyFailed(f"{outdir}: {path} is not the file its labels.csv row describes (label "
                               f"{row.label} of {classes} classes, sha256); `augexport inspect --verify` checks them all")
        yield data, row.soft_label, row.label, path


_PNG = b"\x89PNG\r\n\x1a\n"


def _pixels(image: bytes, channels: int) -> np.ndarray:
    """Decode one stored image. augexport's own 8-bit PNGs go through OpenCV (~3x PIL's path here,
    the same pixels); anything else through `codec.decode`."""
    if image[:8] == _PNG:
        import cv2

        arr = cv2.imdecode(np.frombuffer(image, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is not None and arr.dtype == np.uint8:
            if arr.ndim == 2 and channels == 1:
                return arr[:, :, None]
            if arr.ndim == 3 and arr.shape[2] == 3 and channels == 3:
                return arr[:, :, ::-1]
    return codec.decode(image, channels=channels)


def _one_size_hint(entry: dict[str, Any]) -> str:
    """How to get one image size: an export gets it from --image-size; a TTA split's crops or
    rotations of non-square images differ in size whatever --image-size was."""
    if "tta" in entry:
        return ("its TTA variants give different sizes (crops, or rot90/transpose of non-square images); "
                "read the split with tf.data or TFDS, or write variants of one size")
    return "export with --image-size"


def load_arrays(out: str | os.PathLike[str], split: str = "train") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x uint8 N×H×W×C, soft_labels float32 N×C, labels int64 N) of `split`, in record order.
    C of x is the output's channel count (`--channels`): 1 for grey, so x[..., 0] is N×H×W."""
    outdir = OutDir(out)
    manifest, entry = load_split(outdir, split)
    n = int(entry["counts"]["written"])
    channels, classes = int(manifest["channels"]), len(manifest["class_names"])
    soft = np.empty((n, classes), np.float32)
    labels = np.empty(n, np.int64)
    x: np.ndarray | None = None
    count = 0
    for image, soft_label, label, where in _records(outdir, entry, split, classes):
        if count >= n:
            raise UsageError(f"split {split!r} has more records than its manifest's {n}")
        try:
            pixels = _pixels(image, channels)
        except DecodeError as exc:
            raise VerifyFailed(f"{outdir}: split {split!r}, {where}: {exc}") from None
        if x is None:
            x = np.empty((n, *pixels.shape), np.uint8)
        elif pixels.shape != x.shape[1:]:
            raise UsageError(f"record {count} of split {split!r} is {pixels.shape[0]}x{pixels.shape[1]} (HxW), record 0 "
                             f"{x.shape[1]}x{x.shape[2]}: one array needs one size; {_one_size_hint(entry)}")
        x[count], soft[count], labels[count] = pixels, soft_label, label
        count += 1
    if count != n:
        raise UsageError(f"split {split!r} has {count} records, its manifest says {n}")
    if x is None:  # no record: the pipeline's image_size where it had one, so x still stacks with others
        size = (entry.get("pipeline") or {}).get("image_size") or (0, 0)
        x = np.empty((0, int(size[0]), int(size[1]), channels), np.uint8)
    return x, soft, labels
