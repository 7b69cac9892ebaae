"""Read augexport output back through augexport's own reader (no TF) for quick assertions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from augexport.outdir import OutDir
from augexport.reader import load_split, split_examples


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / "augexport.json").read_text())


def read_records(out: Path, split: str = "train") -> list[dict[str, Any]]:
    outdir = OutDir(out)
    _, entry = load_split(outdir, split)
    return list(split_examples(outdir, entry))


def shard_hashes(out: Path, split: str = "train") -> list[tuple[str, str]]:
    return [(p.name, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(out.glob(f"*-{split}.tfrecord-*-of-*")) if not p.name.startswith(".")]
