"""`augexport.json`: what was written, how, from what. The last file written by every run.

A manifest found in OUT is untrusted input: it is read with a size bound, and every name in it
(split, shard and errors file names) must be exactly one augexport builds (`naming`), so that
`--overwrite`, `--resume` and `inspect --verify` never touch a file outside OUT.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .errors import UsageError
from .naming import DATASET_RE, LABELS_FILE, MANIFEST, SplitNames, valid_split
from .objstore import open_outdir
from .outdir import OutDir

FORMAT_VERSION = 1
MAX_MANIFEST_BYTES = 256 << 20


class UnreadableManifest(UsageError):
    """The manifest is not JSON at all (a torn or damaged file): `--overwrite` may replace it. A
    manifest that parses but is not valid (e.g. names files outside OUT) is refused even then."""


def read_manifest(outdir: OutDir | str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest in OUT, validated; None when there is none."""
    outdir = outdir if isinstance(outdir, OutDir) else open_outdir(outdir)
    if not outdir.exists(MANIFEST):
        return None
    where = outdir.where(MANIFEST)
    try:
        data = json.loads(outdir.read_bytes(MANIFEST, MAX_MANIFEST_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise UnreadableManifest(f"{where} is not a readable augexport manifest: {exc}") from None
    problem = _problem(data)
    if problem:
        raise UsageError(f"{where} is not a valid augexport manifest: {problem}")
    return data


def _problem(data: Any) -> str | None:
    """What is missing or malformed in a manifest (None when it is usable)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key, kind in (("name", str), ("class_names", list), ("channels", int), ("encoding", str), ("splits", dict)):
        if not isinstance(data.get(key), kind):
            return f"`{key}` is missing or not a {kind.__name__}"
    if not DATASET_RE.fullmatch(data["name"]):
        return f"`name` {data['name'][:80]!r} is not a dataset name (lower case letters, digits and _)"
    for split, entry in data["splits"].items():
        problem = _split_problem(data["name"], split, entry)
        if problem:
            return problem
    return None


def _split_problem(name: str, split: str, entry: Any) -> str | None:
    if not valid_split(split):
        return f"split {split[:80]!r} is not a split name (letters, digits and _)"
    if not isinstance(entry, dict) or not isinstance(entry.get("shards"), list) or not isinstance(entry.get("counts"), dict):
        return f"split {split!r} lacks `shards` or `counts`"
    names = SplitNames(name, split)
    for shard in entry["shards"]:
        if not isinstance(shard, dict) or not {"file", "records", "bytes", "sha256"} <= set(shard):
            return f"split {split!r} has a shard entry without file, records, bytes and sha256"
        if not names.is_shard(shard["file"]):
            return f"split {split!r} lists shard {str(shard['file'])[:80]!r}, which is not one of its shard names"
        if not all(isinstance(shard[k], int) and not isinstance(shard[k], bool) for k in ("records", "bytes")) \
                or not isinstance(shard["sha256"], str):
            return f"split {split!r}: shard {shard['file']} has non-integer records/bytes or a non-text sha256"
    errors_file = entry.get("errors_file")
    if errors_file is not None and errors_file != names.errors_file:
        return f"split {split!r} names errors file {str(errors_file)[:80]!r}; expected {names.errors_file}"
    images = entry.get("images")
    if images is not None and not (isinstance(images, dict) and images.get("dir") == names.images_dir
                                   and images.get("labels_file") == LABELS_FILE
                                   and isinstance(images.get("labels_sha256"), str)
                                   and all(isinstance(images.get(k), int) and not isinstance(images.get(k), bool)
                                           for k in ("files", "labels_bytes"))):
        return f"split {split!r} has an images entry that is not {{dir: {names.images_dir}, files, labels_file: " \
               f"{LABELS_FILE}, labels_sha256, labels_bytes}}"
    return None


def write_manifest(outdir: OutDir, manifest: dict[str, Any]) -> None:
    outdir.write_atomic(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())


def split_files(manifest: dict[str, Any], split: str) -> list[str]:
    """Every name in OUT a split owns (shards, errors file, image folder), for --overwrite."""
    entry = manifest["splits"][split]
    names = SplitNames(manifest["name"], split)
    files = [s["file"] for s in entry.get("shards", [])]
    if entry.get("errors_file"):
        files.append(entry["errors_file"])
    files.append(names.images_dir)
    return files
