"""A source-disjoint train/val split, made before any augmentation, materialised as class folders.

Each source image goes to `val` when a seeded hash of its id falls below `val_fraction`: the split
does not depend on listing order, and adding images never moves the others. Both sides become
class folders under OUT (hard links to folder sources, written bytes for TFDS sources), so every
variant is exported from exactly the same training images and `val` is exported once, unaugmented.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..sources import SourceItem, SourceListing

DIGITS = "sklearn:digits"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DUPLICATE = re.compile(r"#\d+$")  # tfds sources suffix a repeated example (`train+train`) with #index


def hash_fraction(source_id: str, seed: int) -> float:
    """A uniform number in [0, 1) from (seed, source_id): the split's only randomness."""
    digest = hashlib.sha256(f"compare-split\x00{seed}\x00{source_id}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Split:
    """Which items train and which validate, in hash order; `classes` are the folder names."""

    train: list[SourceItem]
    val: list[SourceItem]
    classes: list[str]


def split_items(listing: SourceListing, seed: int, val_fraction: float, train_per_class: int | None) -> Split:
    """Hash split; then at most `train_per_class` training images per class (lowest hashes first)."""
    tfds = listing.kind == "tfds"
    if len(listing.class_names) < 2:
        raise UsageError(f"SOURCE {listing.location}: compare trains a classifier, and it has "
                         f"{len(listing.class_names)} class ({', '.join(listing.class_names)}); accepted: 2 or more")

    def key(item: SourceItem) -> float:
        # a repeated TFDS example is the same image: it must hash like its first occurrence
        return hash_fraction(_DUPLICATE.sub("", item.source_id) if tfds else item.source_id, seed)

    ranked = sorted(listing.items, key=lambda it: (key(it), it.source_id))
    val = [it for it in ranked if key(it) < val_fraction]
    train: list[SourceItem] = []
    per_class = [0] * len(listing.class_names)
    for item in ranked:
        if key(item) >= val_fraction and (train_per_class is None or per_class[item.label] < train_per_class):
            per_class[item.label] += 1
            train.append(item)
    if not val:
        raise UsageError(f"--val-fraction {val_fraction} leaves no validation image among {len(ranked)}; raise it")
    if not train:
        raise UsageError(f"--val-fraction {val_fraction} leaves no training image among {len(ranked)}; lower it")
    # folder sources keep their class folders (and so their source ids); TFDS names may need prefixes
    return Split(train, val, folder_names(listing.class_names) if tfds else list(listing.class_names))


def folder_names(class_names: list[str]) -> list[str]:
    """Class folder names whose sorted order is the class index order (what folder sources assume):
    the names themselves when they already sort so and are safe file names, else `007_name`."""
    safe = [_SAFE.sub("_", n).strip("._") or "class" for n in class_names]
    if safe == class_names and sorted(safe) == safe and len(set(safe)) == len(safe):
        return safe
    width = len(str(len(class_names) - 1))
    return [f"{i:0{width}d}_{n}" for i, n in enumerate(safe)]


def _link_or_copy(src: str, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed: a copy reads the same
        shutil.copyfile(src, dst)


def _file_name(item: SourceItem, data: bytes | None) -> str:
    """Folder items keep their path under the class; TFDS items get a safe name with the image's extension."""
    if data is None:
        return item.source_id.split("/", 1)[1]
    ext = ".png" if data.startswith(b"\x89PNG") else ".jpg"
    return _SAFE.sub("_", item.source_id).strip("._") + ext


def materialise(items: list[SourceItem], classes: list[str], root: Path, from_folder: bool) -> None:
    """Write `root/<class>/<file>` for every item (every class folder, even an empty one, so that
    all splits exported from these folders have the same class names)."""
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    for item in items:
        data = None if from_folder else item.read()
        dst = root / classes[item.label] / _file_name(item, data)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if data is None:
            assert item.path is not None
            _link_or_copy(item.path, dst)
        else:
            dst.write_bytes(data)


def write_digits(root: Path, size: int = 32) -> Path:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download) as `root/<digit>/<index>.png`,
    upscaled bilinearly to size x size, grey levels 0..16 stretched to 0..255."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for d in range(10):
        (root / str(d)).mkdir(parents=True, exist_ok=True)
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        grey = Image.fromarray(np.clip(pixels * (255 / 16), 0, 255).round().astype(np.uint8))
        grey.resize((size, size), Image.Resampling.BILINEAR).save(root / str(label) / f"{index:04d}.png")
    return root
