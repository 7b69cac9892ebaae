"""SOURCE -> a listing: a folder of class sub-folders, a flat folder with `--labels`, `tfds:NAME`, or
an array source (`npz:PATH`, `npy:X.npy,Y.npy`, in-memory arrays); folders may be local paths or
URLs (`s3://bucket/prefix`)."""

from __future__ import annotations

import os
from typing import Any

from ..errors import UsageError
from ..fs import is_url
from ..quiet import quiet_stderr
from . import SourceListing
from .arrays import ArrayOptions, is_array_source, list_arrays
from .folder import list_folder


def check_tfds_flags(source: str, split: str | None, data_dir: str | None) -> None:
    """Where --split is a TFDS split expression (preview, compare), it and --data-dir would be
    ignored for any other SOURCE: refused, as export refuses --data-dir."""
    if str(source).startswith("tfds:"):
        return
    for flag, value in (("--split", split), ("--data-dir", data_dir)):
        if value is not None:
            raise UsageError(f"{flag} {value!r} applies to tfds: sources only (SOURCE is {source})")


SOURCE_FORMS = "a folder of class folders, tfds:NAME, npz:FILE, npy:X.npy,Y.npy or a URL"


def check_not_empty(source: Any, accepted: str = SOURCE_FORMS) -> None:
    """An empty SOURCE is a mistake, not the current folder (which Path("") is)."""
    if not str(source).strip():
        raise UsageError(f"SOURCE {str(source)!r} is empty; accepted: {accepted}")


def open_source(source: str, *, labels: str | None = None, name: str | None = None, split: str | None = None,
                data_dir: str | None = None, image_key: str | None = None, label_key: str | None = None,
                spool_dir: str | os.PathLike[str] | None = None, arrays: dict[str, Any] | None = None) -> SourceListing:
    """List SOURCE. tfds: sources spill their encoded images into `spool_dir` (export passes OUT, so
    nothing is written outside it; `SourceListing.release()` removes the spill), as array sources
    do when they need a C-ordered copy. `arrays`: the fields of `ArrayOptions` (keys, class names, ...)."""
    check_not_empty(source)
    if is_array_source(source):
        if image_key or label_key:
            raise UsageError("--image-key/--label-key apply to tfds: sources only; array sources take --x-key/--y-key")
        given = {k: v for k, v in (arrays or {}).items() if v is not None}
        return list_arrays(str(source), ArrayOptions(**given, labels=labels), name=name, spool_dir=spool_dir)
    if str(source).startswith("tfds:"):
        from .tfds import list_tfds  # tfds/TF only for tfds sources

        if labels:
            raise UsageError("--labels applies to folder sources only; a tfds: source has its own labels")
        with quiet_stderr():  # TF's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL (quiet.py)
            return list_tfds(str(source)[5:], split=split, data_dir=data_dir, name=name, image_key=image_key,
                             label_key=label_key, spool_dir=spool_dir)
    if image_key or label_key:
        raise UsageError("--image-key/--label-key apply to tfds: sources only")
    if is_url(source):
        from .remote import list_remote_folder  # fsspec only for URLs

        return list_remote_folder(str(source), labels=labels, name=name)
    return list_folder(source, labels=labels, name=name)
