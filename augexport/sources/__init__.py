"""Sources list examples as `SourceItem`s: (source_id, label, where the bytes are)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DecodeError, SourceUnavailable
from ..fs import cat_range, explain, is_transport_error, is_url, open_fs

if TYPE_CHECKING:
    from ..codec import Decoder

DEFAULT_MAX_FILE_BYTES = 1 << 30  # 1 GiB: far above any real image file, far below what exhausts memory
_FILE_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


@dataclass(frozen=True)
class RawPixels:
    """The bytes of an array source's item: one row of a C-ordered array (not an encoded file).
    Shared by every item of the array, so a task pickles it once."""

    shape: tuple[int, int, int]  # (H, W, C) of one item, C = 1 or 3
    dtype: str  # the stored array's numpy dtype ('|u1', '<f4', ...)
    scale: float = 1.0  # 255 for floats in [0, 1]; the product is rounded half to even and clipped

    def image(self, data: bytes) -> np.ndarray:
        """uint8 (H, W, C) pixels of one item (a fresh array: stages never see the buffer)."""
        arr = np.frombuffer(data, dtype=np.dtype(self.dtype)).reshape(self.shape)
        if arr.dtype == np.uint8:
            return arr.copy()
        values = np.nan_to_num(arr.astype(np.float64) * self.scale, nan=0.0)
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)


@dataclass(frozen=True, slots=True)  # slots: a listing holds one per source image (~100 bytes less each)
class SourceItem:
    """One base example. `path` for files (read in the worker), `data` for in-memory bytes;
    `offset`/`length` name a byte range of `path` (TFDS examples spilled to one file, or one row
    of an array source, whose bytes are raw pixels described by `pixels`). `path` may be a URL
    (`s3://...`): the worker opens the filesystem itself (fsspec keeps one per process), so items
    stay small and picklable."""

    source_id: str
    label: int
    path: str | None = None
    data: bytes | None = None
    offset: int = 0
    length: int | None = None
    pixels: RawPixels | None = None

    def decode(self, decoder: Decoder, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> np.ndarray:
        """The item's pixels: an encoded file decoded, or an array row taken as it is; both then get
        the decoder's channel count and resize."""
        data = self.read(max_bytes)
        if self.pixels is not None:
            return decoder.pixels(self.pixels.image(data))
        return decoder(data)

    def decode_keeping(self, decoder: Decoder, quality: int, max_bytes: int = DEFAULT_MAX_FILE_BYTES
                       ) -> tuple[np.ndarray, bytes | None]:
        """`decode`, and the file's own JPEG stream where an unchanged copy may store it instead of
        a re-encode at `quality` (`Decoder.keeping`); array rows have none."""
        if self.pixels is not None:
            return self.decode(decoder, max_bytes), None
        return decoder.keeping(self.read(max_bytes), quality)

    def read(self, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
        """The encoded image. Only regular files are read (a FIFO would block forever, a device never
        end), at most `max_bytes`; every failure is a DecodeError that the engine skips or reports."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        if is_url(self.path):
            return self._read_object(max_bytes)
        try:
            return self._read_file(max_bytes)
        except OSError as exc:
            raise DecodeError(f"cannot read file: {exc.strerror or exc}") from None

    def _read_object(self, max_bytes: int) -> bytes:
        """One ranged GET (at most `max_bytes` + 1 bytes). A missing or forbidden object is this
        input's error; a store that cannot be reached fails the run (skipping every input would
        finish an export of nothing)."""
        assert self.path is not None
        fs, path = open_fs(self.path, f"SOURCE item {self.path}")
        start = self.offset
        end = start + (self.length if self.length is not None else max_bytes + 1)
        try:
            data = cat_range(fs, path, start, min(end, start + max_bytes + 1))
        except Exception as exc:  # storage libraries raise their own types
            if is_transport_error(exc):
                raise SourceUnavailable(f"cannot read {self.path}: {explain(exc)}") from None
            raise DecodeError(f"cannot read file: {explain(exc)}") from None
        if self.length is not None and len(data) != self.length:
            if self.length > max_bytes:
                raise DecodeError(f"file of {self.length} bytes exceeds the limit of {max_bytes} bytes (--max-file-bytes)")
            raise DecodeError(f"cannot read file: {self.path}: {len(data)} of {self.length} bytes at offset {self.offset}")
        if len(data) > max_bytes:
            raise DecodeError(f"file exceeds the limit of {max_bytes} bytes (--max-file-bytes)")
        return data

    def _read_file(self, max_bytes: int) -> bytes:
        assert self.path is not None
        fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                kind = _FILE_KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
                raise DecodeError(f"not a regular file ({kind}); only regular files are read")
            want = self.length if self.length is not None else st.st_size
            if want > max_bytes:
                raise DecodeError(f"file of {want} bytes exceeds the limit of {max_bytes} bytes (--max-file-bytes)")
            f.seek(self.offset)
            data = f.read(min(want, max_bytes) + (0 if self.length is not None else 1))
        if self.length is not None and len(data) != self.length:
            raise DecodeError(f"cannot read file: {self.path}: {len(data)} of {self.length} bytes at offset {self.offset}")
        if len(data) > max_bytes:
            raise DecodeError(f"file grew beyond the limit of {max_bytes} bytes (--max-file-bytes) while being read")
        return data


@dataclass
class SourceListing:
    """What a source yields: class names, the items in source order, a fingerprint, and a
    description for the manifest. Items that cannot even be listed are `problems`."""

    kind: str
    location: str
    name: str
    class_names: list[str]
    items: Sequence[SourceItem]  # a list, or an array source's lazy rows (sources/array_items.py)
    fingerprint: str
    problems: list[tuple[str, str]]
    spool: str | None = None  # a tfds source's temporary copy of the encoded split (removed by release())
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, why): hidden, not an image name
    cleanup: Callable[[], Any] | None = field(default=None, repr=False)

    @property
    def spool_name(self) -> str | None:
        return os.path.basename(self.spool) if self.spool else None

    def release(self) -> None:
        """Remove what listing the source left on disk (the tfds spool); safe to call twice."""
        if self.cleanup is not None:
            self.cleanup()
