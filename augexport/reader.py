"""Reading a split back: the one shard reader of `inspect`, `tta-merge` and the tests.

Shards are opened through `OutDir` (never through a link, names from a validated manifest) and
decoded with augexport's own Example parser, so reading needs no TensorFlow.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any, BinaryIO

from .errors import UsageError, VerifyFailed
from .manifest import read_manifest
from .naming import MANIFEST
from .outdir import OutDir
from .records import decode_example, read_tfrecords


def load_split(outdir: OutDir, split: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest, split entry) of OUT; UsageError naming the accepted splits."""
    manifest = read_manifest(outdir)
    if manifest is None:
        raise UsageError(f"{outdir} has no {MANIFEST}: not an augexport output folder")
    if split not in manifest["splits"]:
        raise UsageError(f"split {split!r} is not in {outdir}; accepted: {', '.join(sorted(manifest['splits']))}")
    return manifest, manifest["splits"][split]


def open_shard(outdir: OutDir, file: str, compression: str) -> BinaryIO:
    raw = outdir.open_read(file)
    return gzip.GzipFile(fileobj=raw, mode="rb") if compression == "gzip" else raw  # type: ignore[return-value]


def shard_records(outdir: OutDir, file: str, compression: str, verify: bool = True) -> Iterator[bytes]:
    """The serialized Examples of one shard, in order."""
    with open_shard(outdir, file, compression) as f:
        yield from read_tfrecords(f, verify=verify)


def split_examples(outdir: OutDir, entry: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every record of a split (its manifest entry), decoded, in record order; a damaged or missing
    shard is VerifyFailed naming it."""
    for shard in entry["shards"]:
        try:
            for data in shard_records(outdir, shard["file"], entry.get("compression", "none")):
                yield decode_example(data)
        except (ValueError, EOFError, OSError) as exc:  # a checksum, a cut record, a shard gone
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise VerifyFailed(f"{outdir}: shard {shard['file']} cannot be read: {why}; `augexport inspect "
                               "--verify` checks every shard") from None
