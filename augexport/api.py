"""The Python API: what the CLI and the tests call. Thin facades over the rooms that do the work.

    from augexport import api
    api.export("photos/", "out/", overrides={"copies": 4, "stages": [{"keras": {"rotation_range": 20}}]})
    api.inspect("out/", verify=True)
"""

from __future__ import annotations

import inspect as _inspect_module
import os
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from .errors import UsageError
from .inspection import format_inspect, inspect
from .naming import dataset_name
from .options import ExportOptions, parse_size
from .pipeline import Pipeline, resolve_pipeline
from .run import ExportResult, ExportRun
from .sources.open import check_not_empty, open_source
from .spec import close_matches

__all__ = ["ExportResult", "Pipeline", "UsageError", "compare", "dataset_name", "export", "export_arrays", "format_inspect",
           "format_ops", "inspect", "load_arrays", "open_source", "parse_size", "preview", "resolve_pipeline", "tta",
           "tta_merge"]


def _known(function: str, given: Any, accepted: Iterable[str], refused_later: Iterable[str] = ()) -> None:
    """An unknown keyword is a UsageError naming it (and what is close), not a TypeError from deep
    inside; `refused_later` are known names the callee refuses with its own reason."""
    names, later = sorted(set(accepted)), set(refused_later)
    for key in given:
        if key not in names and key not in later:
            raise UsageError(f"{function}(): unknown keyword argument {key!r}{close_matches(key, names)}; "
                             f"accepted: {', '.join(names)}")


def _signature_names(fn: Any, *skip: str) -> list[str]:
    return [n for n in _inspect_module.signature(fn).parameters if n not in skip and n not in ("kw", "options", "export_kw")]


EXPORT_OPTIONS = tuple(f.name for f in fields(ExportOptions))
# the options of a file or tfds: SOURCE, which in-memory arrays refuse with their own reason
NOT_FOR_MEMORY = ("x_key", "y_key", "labels", "data_dir", "image_key", "label_key")


def _paths(source: Any, out: Any) -> None:
    """SOURCE and OUT are paths or URLs: an array or a number there failed later, blaming OUT."""
    if not isinstance(source, (str, os.PathLike)):
        hint = "; for numpy arrays call export_arrays(x, y, out)" if hasattr(source, "shape") else ""
        raise UsageError(f"SOURCE must be a path or URL (str or os.PathLike), not {type(source).__name__}{hint}")
    check_not_empty(source)
    _out_path(out)


def _out_path(out: Any) -> None:
    if not isinstance(out, (str, os.PathLike)):
        raise UsageError(f"OUT must be a path or URL (str or os.PathLike), not {type(out).__name__}")


def export(source: str, out: str | os.PathLike[str], **options: Any) -> ExportResult:
    """Augment SOURCE and write shards (and optionally image files) into OUT (see the README).
    `options` are the fields of `augexport.options.ExportOptions` (config, overrides, workers, ...)."""
    _known("export", options, EXPORT_OPTIONS)
    _paths(source, out)
    return ExportRun(source, out, ExportOptions(**options)).execute()


def export_arrays(x: Any, y: Any, out: str | os.PathLike[str], **options: Any) -> ExportResult:
    """Augment numpy arrays (x: N×H×W, N×H×W×1 or N×H×W×3 pixels; y: N class indices or N×C one-hot)
    into OUT, as `export` does for a folder; `source_id` = the row index. `options` as for `export`,
    plus class_names and value_range (see `augexport.sources.arrays`)."""
    from .sources.arrays import MEMORY

    _known("export_arrays", options, (n for n in EXPORT_OPTIONS if n not in ("arrays", *NOT_FOR_MEMORY)), NOT_FOR_MEMORY)
    return ExportRun(MEMORY, out, ExportOptions(arrays=(x, y), **options)).execute()


def load_arrays(out: str | os.PathLike[str], split: str = "train") -> tuple[Any, Any, Any]:
    """A split of OUT as numpy arrays in record order: (x uint8 N×H×W×C, soft_labels float32 N×C,
    labels int64 N); see `augexport.array_reader.load_arrays`."""
    from .array_reader import load_arrays as _load

    _out_path(out)
    return _load(out, split)


def tta(source: str, out: str | os.PathLike[str], *, variants: str | Sequence[str], **kw: Any) -> ExportResult:
    """Write a deterministic TTA variant set (see `augexport.tta.export_tta`)."""
    from .tta import NOT_FOR_TTA, export_tta  # TTA vocabulary only when asked for

    _paths(source, out)
    refused = ("shuffle", *NOT_FOR_TTA)
    _known("tta", kw, [*_signature_names(export_tta, "source", "out", "variants"),
                       *(n for n in EXPORT_OPTIONS if n not in refused)], refused)
    return export_tta(source, out, variants=variants, **kw)


def tta_merge(out: str | os.PathLike[str], split: str, predictions: Any, **kw: Any) -> Any:
    """Merge per-variant predictions of a TTA split (see `augexport.tta_merge.merge`)."""
    from .tta_merge import merge

    _known("tta_merge", kw, _signature_names(merge, "out", "split", "predictions"))
    return merge(out, split, predictions, **kw)


def format_ops(word: str | None = None) -> str:
    """`augexport ops [WORD]`: every stage, op and parameter the pipeline file accepts (those matching WORD)."""
    from .ops import format_ops as _format

    return _format(word)


def compare(source: str | None, out: str | os.PathLike[str], **kw: Any) -> Any:
    """Export SOURCE with each pipeline and train one small Keras CNN per pipeline on a
    source-disjoint split (see `augexport.compare.run_compare`); imports TensorFlow."""
    from .compare import run_compare

    _known("compare", kw, _signature_names(run_compare, "source", "out"))
    return run_compare(source, out, **kw)


def preview(source: str, out_png: str | os.PathLike[str], **kw: Any) -> Any:
    """Write a PNG contact sheet of what export would write (see `augexport.preview.make_preview`)."""
    from .preview import ROW_OPTIONS, make_preview  # PIL drawing only when asked for

    _known("preview", kw, {*_signature_names(make_preview, "source", "out_png"), *ROW_OPTIONS})
    return make_preview(source, out_png, **kw)
