"""Every option of an export, validated once, in one place, before any work starts.

`ExportOptions` holds what `augexport export` (and `tta`) accept: source options, output format,
execution (workers, device, runner) and the pipeline flags that build or override the pipeline.
`check()` raises UsageError naming the flag and the accepted values; nothing else validates flags.
"""

from __future__ import annotations

import numbers
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import codec
from .errors import UsageError
from .naming import MAX_NAME_CHARS, valid_split
from .sources import DEFAULT_MAX_FILE_BYTES
from .sources.arrays import ArrayOptions, array_channels, is_array_source
from .sources.tfds import output_split_name

FORMATS = ("tfrecord", "images", "both")
ON_ERROR = ("skip", "fail")
RUNNERS = ("local", "beam")
DEVICES = ("auto", "cpu", "gpu")
COMPRESSIONS = ("none", "gzip")
DEFAULT_SHARD_BYTES = 256 << 20
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?\s*$", re.I)
_UNITS = {None: 1, "b": 1, "kb": 10**3, "kib": 2**10, "mb": 10**6, "mib": 2**20, "gb": 10**9, "gib": 2**30}


def parse_size(text: str | int, flag: str = "--shard-size") -> int:
    """`256MiB`, `1GB`, `1048576` -> bytes (at least 1KiB)."""
    if isinstance(text, int) and not isinstance(text, bool):
        size = text
    else:
        m = _SIZE_RE.match(str(text))
        size = int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower() or None]) if m else 0
    if size < 1024:
        raise UsageError(f"{flag} {text!r} is not accepted; accepted: a size of at least 1KiB, as a number "
                         "with B, KB, KiB, MB, MiB, GB or GiB (e.g. 256MiB)")
    return size


def check_choice(flag: str, value: str, accepted: Sequence[str]) -> None:
    if value not in accepted:
        raise UsageError(f"{flag} {value!r} is not accepted; accepted: {', '.join(accepted)}")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def max_workers() -> int:
    """More processes than this only add start-up time and memory (each holds its own buffers),
    and Ctrl-C waits until a pool has started; 4 per core leaves room for I/O-bound sources."""
    return max(32, 4 * default_workers())


def is_tfds(source: str) -> bool:
    return str(source).startswith("tfds:")


@dataclass
class ExportOptions:
    """The options of one export; field names are the Python API's keyword arguments."""

    # the pipeline: a file, a dict of overrides (Python API), and the CLI's pipeline flags
    config: str | os.PathLike[str] | None = None
    overrides: dict[str, Any] | None = None
    seed: int | None = None
    copies: int | None = None
    include_original: bool | None = None
    image_size: Any = None
    interpolation: str | None = None  # these three: Keras' resize modes (resize.py)
    crop_to_aspect_ratio: bool | None = None
    pad_to_aspect_ratio: bool | None = None
    label_smoothing: float | None = None
    keras: dict[str, Any] = field(default_factory=dict)  # ImageDataGenerator flags (text or values)
    mix_method: str | None = None
    mix_alpha: float | None = None
    mix_p: float | None = None
    # the source
    labels: str | None = None
    split: str | None = None
    name: str | None = None
    data_dir: str | None = None
    image_key: str | None = None
    label_key: str | None = None
    channels: int | None = None  # None: 3, or an array source's own channel count
    x_key: str | None = None  # array sources (npz:, npy:, augexport.export_arrays): sources/arrays.py
    y_key: str | None = None
    class_names: Sequence[str] | str | None = None
    value_range: str | None = None
    arrays: tuple[Any, Any] | None = None  # (x, y) numpy arrays in memory
    max_pixels: int | None = None  # None: codec.DEFAULT_MAX_PIXELS (PIL's bomb limit)
    max_file_bytes: str | int = DEFAULT_MAX_FILE_BYTES
    # the output
    fmt: str = "tfrecord"
    encoding: str = "jpeg"
    quality: int = 95
    num_shards: int | None = None
    shard_size: str | int | None = None
    compression: str = "none"
    shuffle: bool = True
    on_error: str = "skip"
    overwrite: bool = False
    resume: bool = False
    # execution and reporting
    workers: int | None = None
    batch_size: int = 16
    device: str = "auto"
    runner: str = "local"
    beam_options: Sequence[str] = ()
    command: list[str] | None = None
    progress: Callable[[int], Any] | None = None
    on_start: Callable[[int], Any] | None = None

    def check(self, source: str) -> None:
        """Validate every flag (exit 2 naming it); resolves `workers` and `split`."""
        self._check_types()
        check_choice("--format", self.fmt, FORMATS)
        check_choice("--encoding", self.encoding, codec.ENCODINGS)
        check_choice("--compression", self.compression, COMPRESSIONS)
        check_choice("--on-error", self.on_error, ON_ERROR)
        check_choice("--device", self.device, DEVICES)
        check_choice("--runner", self.runner, RUNNERS)
        self._check_array_flags(source)
        if self.channels is None:
            self.channels = array_channels(source, ArrayOptions(**self.array_options(), labels=self.labels)) \
                if is_array_source(source) else 3
        if self.channels not in (1, 3):
            raise UsageError(f"--channels {self.channels} is not accepted; accepted: 1, 3")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality {self.quality} is out of range; accepted: 1..100")
        self._check_counts()
        if self.split == "":
            raise UsageError("--split '' is not a valid split name; accepted: letters, digits and _ "
                             f"(at most {MAX_NAME_CHARS}), or leave it out for train")
        self.split = self.split or "train"
        if not valid_split(self.base_split(source)):
            raise UsageError(f"--split {self.split[:120]!r} is not a valid split name; accepted: letters, digits and _ "
                             f"(at most {MAX_NAME_CHARS})")
        self._check_exclusive(source)
        if self.runner == "beam" and self.device == "gpu":
            raise UsageError("--device gpu is not available with --runner beam in this version (Beam workers mix in "
                             "numpy); use --device cpu or auto")

    def _check_exclusive(self, source: str) -> None:
        """Flags that contradict each other, or that would be ignored for this source or runner."""
        if self.resume and self.overwrite:
            raise UsageError("--resume and --overwrite are exclusive: --resume completes the run in OUT, "
                             "--overwrite starts it over; pass one of them")
        if self.beam_options and self.runner != "beam":
            raise UsageError(f"--beam-option {self.beam_options[0]} applies with --runner beam only")
        if self.data_dir is not None and not str(source).startswith("tfds:"):
            raise UsageError(f"--data-dir {self.data_dir} applies to tfds: sources only (SOURCE is {source})")
        if self.name is not None and (not self.name.strip() or any(c in self.name for c in "/\\")
                                      or len(self.name) > MAX_NAME_CHARS):
            raise UsageError(f"--name {self.name[:120]!r} is not accepted; accepted: a dataset name (letters, digits, "
                             f"_; at most {MAX_NAME_CHARS}), not a path")

    def _check_types(self) -> None:
        """What the CLI's parser guarantees, checked for a Python caller: a string where an integer
        goes failed as a TypeError deep inside."""
        for name in ("workers", "batch_size", "quality", "num_shards", "channels", "max_pixels"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise UsageError(f"--{name.replace('_', '-')} {value!r} is not accepted; accepted: an integer")
            setattr(self, name, int(value))  # numpy's integers too
        if self.overrides is not None and not isinstance(self.overrides, Mapping):
            raise UsageError(f"overrides {type(self.overrides).__name__} is not accepted; accepted: a mapping of "
                             "pipeline keys (copies, stages, mix, ...)")

    def _check_counts(self) -> None:
        if self.num_shards is not None and self.num_shards < 1:
            raise UsageError(f"--num-shards {self.num_shards} is not accepted; accepted: an integer >= 1")
        if self.num_shards is not None and self.shard_size is not None:
            raise UsageError("--num-shards and --shard-size are exclusive; pass one of them")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size {self.batch_size} is not accepted; accepted: an integer >= 1")
        self.workers = default_workers() if self.workers is None else self.workers
        if not 1 <= self.workers <= max_workers():
            raise UsageError(f"--workers {self.workers} is not accepted; accepted: 1 to {max_workers()} (4 per core "
                             f"this process may use, or 32 on smaller machines)")
        self.max_pixels = codec.DEFAULT_MAX_PIXELS if self.max_pixels is None else self.max_pixels
        if self.max_pixels < 1:
            raise UsageError(f"--max-pixels {self.max_pixels} is not accepted; accepted: an integer >= 1")
        self.shard_bytes  # noqa: B018 - validates --shard-size
        self.max_file_bytes = parse_size(self.max_file_bytes, "--max-file-bytes")

    def _check_array_flags(self, source: str) -> None:
        if is_array_source(source):
            keys = [flag for key, flag in (("x_key", "--x-key"), ("y_key", "--y-key")) if getattr(self, key) is not None]
            if keys and not str(source).startswith("npz:"):
                kind = "an npy: source has one array per file" if str(source).startswith("npy:") else \
                    "in-memory arrays are given as x and y"
                raise UsageError(f"{', '.join(keys)} apply to npz: sources only; {kind}")
            if self.labels and str(source).startswith("npy:") and "," in str(source) \
                    and not os.path.isfile(str(source)[4:]):  # a comma of X's own path is no labels file
                raise UsageError(f"--labels and SOURCE {source} both name the labels; accepted: npy:X.npy,Y.npy "
                                 "or npy:X.npy --labels Y.npy")
            return
        flags = {"x_key": "--x-key", "y_key": "--y-key", "class_names": "--class-names", "value_range": "--value-range"}
        used = [flag for key, flag in flags.items() if getattr(self, key) is not None]
        if used:
            raise UsageError(f"{', '.join(used)} apply to array sources only (npz:PATH, npy:X.npy,Y.npy)")

    def array_options(self) -> dict[str, Any]:
        """The array-source fields given (sources.arrays.ArrayOptions keywords)."""
        given = {"x_key": self.x_key, "y_key": self.y_key, "class_names": self.class_names,
                 "value_range": self.value_range}
        if self.arrays is not None:
            given["x"], given["y"] = self.arrays
        return {k: v for k, v in given.items() if v is not None}

    @property
    def shard_bytes(self) -> int:
        return parse_size(self.shard_size) if self.shard_size is not None else DEFAULT_SHARD_BYTES

    def base_split(self, source: str) -> str:
        """The output split name: for tfds sources the base name of the split expression."""
        split = self.split or "train"
        return output_split_name(split) if is_tfds(source) else split

    @property
    def keeps_images(self) -> bool:
        return self.fmt in ("images", "both")

    @property
    def writes_shards(self) -> bool:
        return self.fmt != "images"
