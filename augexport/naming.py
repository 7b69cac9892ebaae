"""Every name augexport gives a file in OUT, and the checks that a name read back is one of them.

One module owns the names (as TFDS' `naming.ShardedFileTemplate` does): shards and their
temporaries, the resume journal, errors files, the image folder and its temporary, the TFDS spool,
the lock, the manifest and TFDS metadata. Names read from a manifest or journal are untrusted
input: they are accepted only when they are exactly a name this module would build for that
split (plain file names, no separators, no `..`, never absolute).
"""

from __future__ import annotations

import collections
import fnmatch
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

MANIFEST = "augexport.json"
TFDS_METADATA = ("dataset_info.json", "features.json", "label.labels.txt")
LOCK = ".augexport.lock"
TEMP_PREFIX = ".tmp-"
JOURNAL_PREFIX = ".augexport-progress-"
SPOOL_PREFIX = ".tmp-tfds-spool-"
ARRAY_SPOOL_PREFIX = ".tmp-arrays-spool-"  # an array source's C-ordered copy (compressed npz, in-memory arrays)
IMAGES = "images"
IMAGES_MARKER = ".augexport-run"  # identity key of the run that wrote an image folder
LABELS_FILE = "labels.csv"  # beside the class folders of images/SPLIT: one row per image file
TFDS_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"

SPLIT_RE = re.compile(r"[A-Za-z0-9_]+")
DATASET_RE = re.compile(r"[a-z][a-z0-9_]*")
_UNSAFE = re.compile(r"[^\w.\-]+")


def temp_name(name: str) -> str:
    """The temporary sibling name an atomic write goes through."""
    return f"{TEMP_PREFIX}{name}"


TEMP_LABELS_FILE = temp_name(LABELS_FILE)  # the labels rows while a run streams them
# kept rows rewritten by --resume; renamed over TEMP_LABELS_FILE once durable
RESUMED_LABELS_FILE = temp_name(f"resumed-{LABELS_FILE}")


_LABELS_PART_PREFIX = temp_name("labels-part-")  # an object store's labels rows, one object per shard


def labels_part(index: int) -> str:
    return f"{_LABELS_PART_PREFIX}{index:06d}.csv"


def is_labels_part(name: str) -> bool:
    return name.startswith(_LABELS_PART_PREFIX) and name.endswith(".csv")


def is_temporary(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def is_journal(name: str) -> bool:
    """A split's resume journal: OUT holds an interrupted run."""
    return name.startswith(JOURNAL_PREFIX)


def is_spool(name: str) -> bool:
    """A source's temporary copy inside OUT (a tfds split's encoded images, an array's pixels)."""
    return name.startswith((SPOOL_PREFIX, ARRAY_SPOOL_PREFIX))


def is_plain_name(name: object) -> bool:
    """A single path component: no separators, not `.`/`..`, not empty, no NUL."""
    return (isinstance(name, str) and bool(name) and name not in (".", "..") and "/" not in name
            and "\\" not in name and "\x00" not in name)


# A shard's name holds both (`{DATASET}-{SPLIT}.tfrecord-00000-of-00001`, its temporary a prefix
# more): 100 characters each keeps every name in OUT under the 255 bytes a file name may have.
MAX_NAME_CHARS = 100


def valid_split(split: object) -> bool:
    return isinstance(split, str) and len(split) <= MAX_NAME_CHARS and SPLIT_RE.fullmatch(split) is not None


def dataset_name(name: str) -> str:
    """A TFDS-valid dataset name: lower snake case, starting with a letter, at most MAX_NAME_CHARS."""
    clean = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")
    if not clean or not clean[0].isalpha():
        clean = f"ds_{clean}" if clean else "dataset"
    return clean[:MAX_NAME_CHARS].rstrip("_")


@dataclass(frozen=True)
class SplitNames:
    """The names of one split's files in OUT."""

    dataset: str
    split: str

    @property
    def _stem(self) -> str:
        return f"{self.dataset}-{self.split}.tfrecord"

    def shard(self, index: int, total: int) -> str:
        """TFDS's `{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}` template."""
        return f"{self._stem}-{index:05d}-of-{total:05d}"

    def temp_shard(self, index: int) -> str:
        return f"{TEMP_PREFIX}{self._stem}-{index:05d}"

    def shard_sidecar(self, index: int) -> str:
        """A Beam worker's note beside its temporary shard (hash and counts)."""
        return f"{self.temp_shard(index)}.json"

    @property
    def beam_errors(self) -> str:
        return f"{TEMP_PREFIX}{self._stem}-errors.json"

    @property
    def temp_prefix(self) -> str:
        """Every temporary of this split's shards (shards, sidecars, Beam errors) starts so."""
        return f"{TEMP_PREFIX}{self._stem}-"

    @property
    def journal(self) -> str:
        return f"{JOURNAL_PREFIX}{self.split}.json"

    @property
    def errors_file(self) -> str:
        return f"errors-{self.split}.jsonl"

    @property
    def images_dir(self) -> str:
        return f"{IMAGES}/{self.split}"

    @property
    def temp_images_dir(self) -> str:
        return f"{IMAGES}/{TEMP_PREFIX}{self.split}"

    def is_shard(self, name: object) -> bool:
        return isinstance(name, str) and re.fullmatch(re.escape(self._stem) + r"-\d{5,}-of-\d{5,}", name) is not None

    def is_temp_shard(self, name: object) -> bool:
        return isinstance(name, str) and re.fullmatch(re.escape(self.temp_prefix) + r"\d{5,}", name) is not None

    def final_of_temp(self, temp: str, total: int) -> str:
        """The final name a temporary shard takes when the split has `total` shards."""
        return self.shard(int(temp[len(self.temp_prefix):]), total)


def reads_as_shard(name: str, split: str) -> bool:
    """Whether `name` matches `*-SPLIT.tfrecord-*`, the glob the README's tf.data reader (and any
    TFDS-style reader) uses for a split's shards, whatever its dataset name."""
    return not name.startswith(TEMP_PREFIX) and fnmatch.fnmatchcase(name, f"*-{split}.tfrecord-*")


# -- image files -----------------------------------------------------------------------------
def safe_class_dir(class_name: str) -> str:
    name = _fit(_UNSAFE.sub("_", class_name).lstrip(".") or "_")  # never "." or ".."
    return f"{name}_" if name == LABELS_FILE else name  # the labels file sits beside the class folders


def class_dir_clash(class_names: Iterable[str]) -> tuple[str, str] | None:
    """Two class names whose image folders would be one (`a b` and `a_b`: both `a_b/`), or None."""
    seen: dict[str, str] = {}
    for name in class_names:
        folder = safe_class_dir(name)
        if folder in seen:
            return seen[folder], name
        seen[folder] = name
    return None


MAX_STEM_BYTES = 200  # file names are limited to 255 bytes; leaves room for `__c<copy>.<ext>` and a hash


def _fit(text: str, limit: int = MAX_STEM_BYTES) -> str:
    """`text` if its UTF-8 form fits in `limit` bytes, else a prefix that fits plus a hash of the whole."""
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) <= limit:
        return text
    digest = hashlib.sha256(raw).hexdigest()[:8]
    head = raw[: limit - 9].decode("utf-8", "ignore")  # drops a character cut in half
    return f"{head}_{digest}"


def _image_stem(class_name: str, source_id: str) -> str:
    parts = PurePosixPath(source_id).parts
    inner = parts[1:] if len(parts) > 1 and parts[0] == class_name else parts
    stem = "_".join([*inner[:-1], PurePosixPath(inner[-1]).stem]) if inner else "image"
    return _fit(_UNSAFE.sub("_", stem)[:200].lstrip(".") or "_")


def colliding_ids(entries: Iterable[tuple[str, str]]) -> set[str]:
    """Source ids whose (class folder, stem) is shared with another source; `entries` = (class, source_id)."""
    groups: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for class_name, sid in entries:
        groups[(safe_class_dir(class_name), _image_stem(class_name, sid).lower())].append(sid)
    return {sid for sids in groups.values() if len(sids) > 1 for sid in sids}


def image_file(names: SplitNames, class_name: str, source_id: str, copy: int, ext: str,
               collisions: set[str] | frozenset[str] = frozenset()) -> str:
    """Where one record's image goes, relative to OUT; the stem keeps sub-folders (joined by `_`).
    Stems that would collide (`img.png` and `img.jpg`) get a short hash of their source id."""
    stem = _image_stem(class_name, source_id)
    if source_id in collisions:
        digest = hashlib.sha256(source_id.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        stem = f"{stem}_{digest}"
    return f"{names.images_dir}/{safe_class_dir(class_name)}/{stem}__c{copy}.{ext}"
