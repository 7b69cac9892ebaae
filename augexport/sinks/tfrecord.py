"""TFRecord shards with TFDS naming, written under temporary names and renamed when complete."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from ..naming import SplitNames
from ..outdir import OutDir

COMPRESSIONS = ("none", "gzip")


@dataclass
class ShardInfo:
    file: str
    records: int
    bytes: int
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {"file": self.file, "records": self.records, "bytes": self.bytes, "sha256": self.sha256}


class _HashingFile:
    """File wrapper that hashes and counts exactly the bytes that reach the disk."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


class _OpenShard:
    """One shard being written: raw file, hashing layer, optional gzip stream on top."""

    def __init__(self, outdir: OutDir, raw: BinaryIO, compression: str) -> None:
        self.outdir, self.raw = outdir, raw
        self.hash = _HashingFile(raw)
        self.stream: _HashingFile | gzip.GzipFile = (
            gzip.GzipFile(filename="", mode="wb", fileobj=self.hash, mtime=0)  # type: ignore[arg-type]
            if compression == "gzip" else self.hash)
        self.records = 0
        self.written = 0

    def write(self, framed: bytes) -> None:
        self.stream.write(framed)
        self.records += 1
        self.written += len(framed)

    def close(self, name: str) -> ShardInfo:
        """Flush, fsync, close (in an object store: upload); what was written, under `name`."""
        if isinstance(self.stream, gzip.GzipFile):
            self.stream.close()
        self.outdir.close_new(self.raw)
        return ShardInfo(name, self.records, self.hash.size, self.hash.sha.hexdigest())


def write_shard(outdir: OutDir, name: str, framed_records: Iterable[bytes], compression: str = "none") -> ShardInfo:
    """One whole shard in one go (the Beam runner's writers): the same write calls, gzip settings
    and fsync as ShardWriter, so the bytes are identical."""
    shard = _OpenShard(outdir, outdir.open_new(name), compression)
    for framed in framed_records:
        shard.write(framed)
    return shard.close(name)


class ShardWriter:
    """Writes framed records into consecutive shards.

    With `num_shards`, record i of the planned sequence goes to shard i·N // planned_total, so the
    split never depends on which inputs were skipped; otherwise a new shard starts once the current
    one reaches `shard_bytes`. Shards are renamed to their final TFDS names only in `finalize()`.
    `finished` are shards an interrupted run completed (verified by the resume room): writing
    continues after them.
    """

    def __init__(self, outdir: OutDir, names: SplitNames, *, planned_total: int, num_shards: int | None = None,
                 shard_bytes: int = 256 << 20, compression: str = "none", finished: Iterable[ShardInfo] = (),
                 on_shard_closed: Callable[[ShardInfo, int], None] | None = None) -> None:
        self.outdir, self.names = outdir, names
        self.on_shard_closed = on_shard_closed
        self.planned_total = max(planned_total, 1)
        self.num_shards = num_shards
        self.shard_bytes = shard_bytes
        self.compression = compression
        self.done: list[ShardInfo] = list(finished)
        self._index = len(self.done) - 1
        self._open_shard: _OpenShard | None = None
        self._last_planned = -1

    def _open(self, index: int) -> None:
        self._close()
        self._index = index
        self._open_shard = _OpenShard(self.outdir, self.outdir.open_new(self.names.temp_shard(index)), self.compression)

    def _close(self) -> None:
        if self._open_shard is None:
            return
        info = self._open_shard.close(self.names.temp_shard(self._index))
        self._open_shard = None
        self.done.append(info)
        if self.on_shard_closed is not None:
            self.on_shard_closed(info, self._last_planned)

    def write(self, planned_index: int, framed: bytes) -> None:
        if self.num_shards:
            target = planned_index * self.num_shards // self.planned_total
            while self._index < target:
                self._open(self._index + 1)
        elif self._open_shard is None or self._open_shard.written >= self.shard_bytes:
            self._open(self._index + 1)
        assert self._open_shard is not None
        self._open_shard.write(framed)
        self._last_planned = planned_index

    def close(self) -> list[ShardInfo]:
        """Close the last shard (and open the empty ones a fixed shard count still needs)."""
        if self.num_shards:
            while self._index < self.num_shards - 1:
                self._open(self._index + 1)
        elif self._open_shard is None and not self.done:
            self._open(0)  # an empty split still gets one (empty) shard
        self._close()
        return list(self.done)

    def finalize(self) -> list[ShardInfo]:
        """Close, then rename every shard to its final name; returns them in order."""
        infos = self.close()
        return rename_final(self.outdir, self.names, infos)

    def abort(self, keep_finished: bool = False) -> None:
        """Remove the temporary shards (a failed run leaves nothing that looks finished). With
        `keep_finished`, closed shards stay for `--resume`; only the one being written goes."""
        doomed = [] if keep_finished else [info.file for info in self.done]
        if self._open_shard is not None:
            self.outdir.discard_new(self._open_shard.raw)
            self._open_shard = None
            doomed.insert(0, self.names.temp_shard(self._index))
        failed: OSError | None = None
        for name in doomed:  # each one tried: one that cannot go must not keep the others
            try:
                self.outdir.unlink(name)
            except OSError as exc:
                failed = failed or exc
        if failed is not None:
            raise failed


def rename_final(outdir: OutDir, names: SplitNames, infos: list[ShardInfo]) -> list[ShardInfo]:
    """Rename closed temporary shards to their TFDS names (`-0000i-of-0000n`), fsync OUT."""
    total = len(infos)
    out = []
    for i, info in enumerate(infos):
        final = names.shard(i, total)
        outdir.rename(info.file, final)
        out.append(ShardInfo(final, info.records, info.bytes, info.sha256))
    outdir.fsync()
    return out
