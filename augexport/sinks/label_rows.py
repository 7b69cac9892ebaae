"""The labels rows of an image folder while a run writes them, durable with every shard the
journal records, so that `--resume` finds exactly the rows of the records it keeps.

- On a local disk (`FileRows`): one streamed CSV, flushed and fsynced after each shard. A resumed
  run writes its kept rows to a new file and renames it over the old one once durable: killed
  again before its next shard, it still leaves them.
- In an object store (`ObjectRows`): an object is only there once its upload is closed, so the
  rows since the last shard go up as one small part object per shard; a resumed run puts its kept
  rows as one base object, then deletes the parts; finalize streams base + parts into labels.csv.

Either way the finished file is `naming.LABELS_FILE` inside the folder, byte for byte the same.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import UsageError
from ..naming import LABELS_FILE, RESUMED_LABELS_FILE, TEMP_LABELS_FILE, is_labels_part, labels_part
from ..outdir import OutDir


def _rows_of(text: str, header: list[str] | None) -> Iterator[list[str]]:
    """CSV rows of `text`; with `header`, the first row must be it (else nothing)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    if header is not None and next(reader, None) != header:
        return
    yield from reader


class RowWriter:
    """csv.writer with "\n" line ends that also quotes a field holding a carriage return: the csv
    module quotes only the characters of its line terminator, so a file name with a bare "\r"
    ended its row for every reader. Such rows are written fully quoted; others byte-identical."""

    def __init__(self, f: Any) -> None:
        self.plain = csv.writer(f, lineterminator="\n")
        self.quoted = csv.writer(f, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row: list[str]) -> None:
        (self.quoted if any("\r" in str(v) for v in row) else self.plain).writerow(row)

    def writerows(self, rows: Iterable[list[str]]) -> None:
        for row in rows:
            self.writerow(row)


def _row_text(rows: list[list[str]]) -> str:
    buf = io.StringIO(newline="")
    RowWriter(buf).writerows(rows)
    return buf.getvalue()


def _kept(rows: Iterator[list[str]], keep: int, folder: str) -> list[list[str]]:
    kept: list[list[str]] = []
    for row in rows:
        if len(kept) == keep:
            break
        kept.append(row)
    if len(kept) != keep:
        raise UsageError(f"--resume: {folder} holds {len(kept)} labels rows of the {keep} records kept; "
                         "rerun with --overwrite")
    return kept


class FileRows:
    """The streamed labels CSV of a local image folder."""

    def __init__(self, outdir: OutDir, folder: str, header: list[str], keep: int) -> None:
        self.outdir, self.folder = outdir, folder
        kept = self._read(header, keep) if keep else []
        outdir.makedirs(folder)
        name = f"{folder}/{RESUMED_LABELS_FILE if kept else TEMP_LABELS_FILE}"
        self.f = io.TextIOWrapper(outdir.open_new(name), encoding="utf-8", errors="surrogateescape", newline="")
        self.writer = RowWriter(self.f)
        self.writer.writerows([header, *kept])
        self.kept = len(kept)
        if kept:
            self.flush()
            outdir.rename(name, f"{folder}/{TEMP_LABELS_FILE}")  # the open file appends under its new name

    def _read(self, header: list[str], keep: int) -> list[list[str]]:
        """The first `keep` rows of an earlier life of this run."""
        return _kept(self.stored_rows(self.outdir, self.folder, header), keep, self.folder)

    @staticmethod
    def stored_rows(outdir: OutDir, folder: str, header: list[str]) -> Iterator[list[str]]:
        """The rows an earlier life left: its streamed CSV, or the finished labels.csv of a run
        killed while finalizing."""
        for name in (f"{folder}/{TEMP_LABELS_FILE}", f"{folder}/{LABELS_FILE}"):
            if outdir.is_file(name):
                with outdir.open_read(name) as raw, io.TextIOWrapper(
                        raw, encoding="utf-8", errors="surrogateescape", newline="") as f:
                    reader = csv.reader(f)
                    if next(reader, None) == header:
                        yield from reader
                return

    def add(self, row: list[str]) -> None:
        self.writer.writerow(row)

    def flush(self) -> None:
        self.f.flush()
        os.fsync(self.f.buffer.fileno())

    def finish(self) -> str:
        """Close the rows; the name of the finished labels.csv."""
        self.flush()
        self.f.close()
        done = f"{self.folder}/{LABELS_FILE}"
        self.outdir.rename(f"{self.folder}/{TEMP_LABELS_FILE}", done)
        return done

    def close(self) -> None:
        if not self.f.closed:
            self.f.close()


class ObjectRows:
    """The labels rows of an image folder in an object store: a base object (the rows a resumed run
    kept, no header) and one part object per shard since."""

    def __init__(self, outdir: OutDir, folder: str, header: list[str], keep: int) -> None:
        self.outdir, self.folder, self.header = outdir, folder, header
        self.base = f"{folder}/{TEMP_LABELS_FILE}"
        kept = _kept(self.stored_rows(outdir, folder, header), keep, folder) if keep else []
        if kept:
            outdir.put(self.base, _row_text(kept).encode("utf-8", "surrogateescape"))
        elif outdir.exists(self.base):
            outdir.unlink(self.base)
        for name in self._parts():  # rows past the kept ones, or already in the base
            outdir.unlink(f"{folder}/{name}")
        outdir.unlink(f"{folder}/{LABELS_FILE}")  # last: until here it is what a kill leaves to read
        self.kept, self.next_part = len(kept), 0
        self.buf = io.StringIO(newline="")
        self.writer = RowWriter(self.buf)

    def _parts(self) -> list[str]:
        return _parts(self.outdir, self.folder)

    def _read(self, name: str) -> str:
        return _read_text(self.outdir, f"{self.folder}/{name}")

    def _stored(self) -> list[str]:
        return _stored(self.outdir, self.folder)

    @staticmethod
    def stored_rows(outdir: OutDir, folder: str, header: list[str]) -> Iterator[list[str]]:
        """The rows an earlier life left: base then parts, or the labels.csv of a run killed
        while finalizing (put whole before base and parts go)."""
        if outdir.exists(f"{folder}/{LABELS_FILE}"):
            yield from _rows_of(_read_text(outdir, f"{folder}/{LABELS_FILE}"), header)
            return
        for name in _stored(outdir, folder):
            yield from _rows_of(_read_text(outdir, f"{folder}/{name}"), None)

    def add(self, row: list[str]) -> None:
        self.writer.writerow(row)

    def flush(self) -> None:
        """The rows since the last shard, as one part object (a PUT is complete or absent)."""
        text = self.buf.getvalue()
        if text:
            self.outdir.put(f"{self.folder}/{labels_part(self.next_part)}", text.encode("utf-8", "surrogateescape"))
            self.next_part += 1
            self.buf = io.StringIO(newline="")
            self.writer = RowWriter(self.buf)

    def finish(self) -> str:
        """labels.csv streamed from the header, the base and the parts; then those go."""
        self.flush()
        done, stored = f"{self.folder}/{LABELS_FILE}", self._stored()
        f = self.outdir.open_new(done)
        try:
            f.write(_row_text([self.header]).encode("utf-8"))
            for name in stored:
                f.write(self._read(name).encode("utf-8", "surrogateescape"))
        except BaseException:
            self.outdir.discard_new(f)
            raise
        self.outdir.close_new(f)
        for name in stored:
            self.outdir.unlink(f"{self.folder}/{name}")
        return done

    def close(self) -> None:
        """Nothing is open: every part went up whole."""


def _parts(outdir: OutDir, folder: str) -> list[str]:
    if not outdir.is_dir(folder):
        return []
    return sorted(name for name in outdir.entries(folder) if is_labels_part(name))


def _read_text(outdir: OutDir, name: str) -> str:
    return outdir.read_bytes(name, 1 << 40).decode("utf-8", "surrogateescape")


def _stored(outdir: OutDir, folder: str) -> list[str]:
    """Base, then parts in order: the names of an object store's rows as the last life left them."""
    base = [TEMP_LABELS_FILE] if outdir.exists(f"{folder}/{TEMP_LABELS_FILE}") else []
    return [*base, *_parts(outdir, folder)]


def stored_rows(outdir: OutDir, folder: str, header: list[str]) -> Iterator[list[str]]:
    """The labels rows an earlier life of this run left in `folder`, in order (what `open_rows`
    keeps its first rows from)."""
    return (ObjectRows if outdir.remote else FileRows).stored_rows(outdir, folder, header)


def open_rows(outdir: OutDir, folder: str, header: list[str], keep: int) -> FileRows | ObjectRows:
    """The labels rows of `folder`, keeping the first `keep` of an earlier life of this run."""
    return (ObjectRows if outdir.remote else FileRows)(outdir, folder, header, keep)
