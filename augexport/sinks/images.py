"""Image-file sink: `OUT/images/SPLIT/<class>/<stem>__c<copy>.<ext>` plus `OUT/images/SPLIT/labels.csv`
(names: `augexport.naming`).

Files are written into `OUT/images/.tmp-SPLIT/` and the folder is renamed into place by
`finalize()`, so a replaced split keeps its old images until the new run is complete, and an
interrupted run leaves nothing under the final name (the temporary folder is kept for `--resume`).

`labels.csv` keeps what an image file cannot hold: one row per image file, in record order, with
the record's label, soft label (one column per class), mixing partner and lambda, params, source
id, copy, variant and the file's sha256 (which `inspect --verify` checks; the manifest pins
labels.csv itself by its sha256, so it stays small however many files there are). CSV rather than
JSON lines because it is what `pandas.read_csv`, spreadsheets and the `--labels` input already
speak, and the soft label lands as numeric columns `soft_label_0..C-1`. The rows are made durable
with every shard (`label_rows`: a streamed CSV on disk, part objects in an object store); a
resumed run keeps exactly the rows of the records its kept shards hold (`keep_rows`) and writes
the rest again.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..naming import (
    IMAGES,
    IMAGES_MARKER,
    LABELS_FILE,
    SplitNames,
    is_plain_name,
    is_temporary,
)
from ..outdir import OutDir
from ..records import decode_example
from .label_rows import open_rows, stored_rows


def labels_header(num_classes: int) -> list[str]:
    return ["file", "label", *(f"soft_label_{i}" for i in range(num_classes)), "mix_source_id", "mix_lambda",
            "params", "source_id", "copy", "variant", "sha256"]


def _f32(value: float) -> str:
    """The shortest text that reads back as the same float32 (`0.05`, `1`)."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-")


def label_row(file: str, image: bytes, example: dict[str, Any]) -> list[str]:
    """One labels.csv row from a record's decoded features (`records.decode_example`)."""
    text = lambda key: example[key][0].decode("utf-8", "surrogateescape")  # noqa: E731
    return [file, str(int(example["label"][0])), *(_f32(v) for v in example["soft_label"]), text("mix_source_id"),
            _f32(example["mix_lambda"][0]), text("params"), text("source_id"), str(int(example["copy"][0])),
            text("variant"), hashlib.sha256(image).hexdigest()]


@dataclass
class LabelRow:
    """A labels.csv row read back; `file` is relative to the split's image folder."""

    file: str
    label: int
    soft_label: np.ndarray
    mix_source_id: str
    mix_lambda: float
    params: list[dict[str, Any]]
    source_id: str
    copy: int
    variant: str
    sha256: str


def _parse_row(row: list[str], header: list[str], where: str) -> LabelRow:
    c = len(header) - 9  # file, label, C soft-label columns, then 7 more
    if len(row) != len(header):
        raise ValueError(f"{where}: {len(row)} columns, the header has {len(header)}")
    file = row[0]
    parts = file.split("/")
    if len(parts) != 2 or not all(is_plain_name(p) for p in parts) or is_temporary(parts[1]):
        raise ValueError(f"{where}: file {file[:80]!r} is not <class>/<file> inside the image folder")
    return LabelRow(file, int(row[1]), np.asarray([float(v) for v in row[2:2 + c]], np.float32), row[2 + c],
                    float(np.float32(row[3 + c])), json.loads(row[4 + c]), row[5 + c], int(row[6 + c]), row[7 + c],
                    row[8 + c])


def read_labels_rows(outdir: OutDir, name: str) -> Iterator[LabelRow]:
    """The rows of a labels.csv in OUT (untrusted: every file name is checked, bad rows raise ValueError)."""
    with outdir.open_read(name) as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape",
                                                          newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or header[:2] != ["file", "label"] or header[-1] != "sha256":
            raise ValueError(f"{name}: not an augexport labels file (header {str(header)[:80]})")
        for i, row in enumerate(reader, start=2):
            yield _parse_row(row, header, f"{name} line {i}")


def whole_kept_files(outdir: OutDir, names: SplitNames, num_classes: int, keep: int) -> int:
    """How many of the first `keep` labels rows an interrupted run left have their image file in
    the temporary folder, whole (its sha256, as the row says): the records a resume may keep. A
    file lost or changed since is written again with its shard, as a changed shard is."""
    header, folder = labels_header(num_classes), names.temp_images_dir
    whole = 0
    for i, row in enumerate(stored_rows(outdir, folder, header)):
        if whole == keep:
            break
        try:
            parsed = _parse_row(row, header, f"{folder} row {i + 1}")
            path = f"{folder}/{parsed.file}"
            if not (outdir.is_file(path) and outdir.sha256(path) == parsed.sha256):
                break
        except (ValueError, OSError):
            break
        whole += 1
    return whole


@dataclass(frozen=True)
class ImageLayout:
    """How the image files of a split are named (`naming.image_file`): what Beam workers need to
    write them; small and picklable."""

    class_names: list[str]
    collisions: frozenset[str]
    ext: str


class ImageFolderWriter:
    """Writes into the temporary folder, and the labels rows into its temporary labels.csv;
    `finalize()` moves the folder into place. Beam workers make their own writer with
    `drop_partial=False, rows=False` (the launcher's writer cleaned the folder and keeps the rows)."""

    def __init__(self, outdir: OutDir, names: SplitNames, run_key: str = "", *, num_classes: int = 0,
                 keep_rows: int = 0, drop_partial: bool = True, rows: bool = True) -> None:
        self.outdir, self.names, self.run_key = outdir, names, run_key
        outdir.require_dir_or_absent(names.temp_images_dir)
        self._prefix = f"{names.images_dir}/"
        self._dirs: set[str] = set()
        if drop_partial:
            self._drop_partial_files()
        self.header = labels_header(num_classes)
        self._rows = open_rows(outdir, names.temp_images_dir, self.header, keep_rows) if rows else None
        self.files = self._rows.kept if self._rows is not None else 0

    def _drop_partial_files(self) -> None:
        """A file cut short by a kill during an earlier life of this (resumed) run."""
        temp = self.names.temp_images_dir
        for cls in self.outdir.entries(temp) if self.outdir.is_dir(temp) else ():
            if self.outdir.is_dir(f"{temp}/{cls}"):
                for name in self.outdir.entries(f"{temp}/{cls}"):
                    if is_temporary(name):
                        self.outdir.unlink(f"{temp}/{cls}/{name}")

    def write(self, relpath: str, data: bytes, framed: bytes | None = None) -> None:
        """Write one image; `relpath` is `images/SPLIT/<class>/<file>` (from `naming.image_file`),
        `framed` its TFRecord (the labels row is taken from it)."""
        assert relpath.startswith(self._prefix), relpath
        folder, _, name = relpath[len(self._prefix):].rpartition("/")
        target = f"{self.names.temp_images_dir}/{folder}"
        if target not in self._dirs:
            self.outdir.makedirs(target)
            self._dirs.add(target)
        self.outdir.put(f"{target}/{name}", data)  # complete or absent under its name
        if framed is not None:
            self.add_row(relpath, decode_example(framed[12:-4]))

    def add_row(self, relpath: str, example: dict[str, Any]) -> None:
        """The labels row of one image file (`relpath` as for write) from its record's features."""
        assert self._rows is not None and relpath.startswith(self._prefix), relpath
        self._rows.add(label_row(relpath[len(self._prefix):], example["image"][0], example))
        self.files += 1

    def flush(self) -> None:
        """Make the rows so far durable (with the shard the journal just recorded): see label_rows."""
        if self._rows is not None:
            self._rows.flush()

    def finalize(self) -> dict[str, Any]:
        """Move the finished folder, labels.csv included, to `images/SPLIT` (replacing an older one);
        returns the manifest's `images` entry."""
        temp, final = self.names.temp_images_dir, self.names.images_dir
        assert self._rows is not None, "a worker's writer does not finalize"
        labels = self._rows.finish()
        digest, size = self.outdir.sha256(labels), self.outdir.size(labels)
        self.outdir.write_atomic(f"{temp}/{IMAGES_MARKER}", (self.run_key + "\n").encode())
        self.outdir.require_dir_or_absent(final)
        self.outdir.remove(final)
        self.outdir.rename(temp, final)
        self.outdir.fsync(IMAGES)
        return {"dir": final, "files": self.files, "labels_file": LABELS_FILE, "labels_sha256": digest,
                "labels_bytes": size}

    def abort(self) -> None:
        """Remove the temporary folder, even where closing the rows fails (a full disk fails the
        flush of their last lines)."""
        try:
            if self._rows is not None:
                self._rows.close()
        finally:
            self.outdir.remove(self.names.temp_images_dir)
            if self.outdir.is_dir(IMAGES) and not self.outdir.entries(IMAGES):
                self.outdir.remove(IMAGES)


def images_owner(outdir: OutDir, folder: str) -> str | None:
    """The identity key recorded in a finished image folder (None if absent or unreadable)."""
    try:
        return outdir.read_bytes(f"{folder}/{IMAGES_MARKER}", limit=4096).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
