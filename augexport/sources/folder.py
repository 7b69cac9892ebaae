"""Folder sources: `root/<class>/<image>` (class index = sorted folder names, like Keras
`image_dataset_from_directory`) or a flat folder with a `filename,label` CSV."""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from ..errors import UsageError
from . import SourceItem, SourceListing

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".jfif"}


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _walk_files(root: Path) -> list[tuple[str, str]]:
    """(relative posix path, absolute path) of every image-named regular file under root, sorted.
    Symlinked directories are not followed (no loops); symlinked files are read."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or not _is_image_name(name):
                continue
            full = os.path.join(dirpath, name)
            found.append((Path(full).relative_to(root).as_posix(), full))
    found.sort()
    return found


def _fingerprint(entries: list[tuple[str, int, str]]) -> str:
    """sha256 over (source_id, label, size, mtime in ns): changes when files are added, removed or
    rewritten, even with the same size (what `--resume` relies on to refuse a changed SOURCE)."""
    h = hashlib.sha256()
    for sid, label, full in entries:
        try:
            st = os.stat(full)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        h.update(f"{sid}\x00{label}\x00{size}\x00{mtime}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def list_class_folders(root: Path, name: str) -> SourceListing:
    classes = sorted(
        d.name for d in root.iterdir() if d.is_dir() and not d.is_symlink() and not d.name.startswith(".")
    )
    if not classes:
        raise UsageError(f"SOURCE {root} has no class sub-folders (expected root/<class>/<image>); "
                         "for a flat folder pass --labels labels.csv")
    items: list[SourceItem] = []
    entries = []
    for index, cls in enumerate(classes):
        for rel, full in _walk_files(root / cls):
            sid = f"{cls}/{rel}"
            items.append(SourceItem(source_id=sid, label=index, path=full))
            entries.append((sid, index, full))
    if not items:
        raise UsageError(f"SOURCE {root} has class folders ({', '.join(classes[:5])}) but no image files "
                         f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return SourceListing("folder", str(root), name, classes, items, _fingerprint(entries), [])


FILE_COLUMNS = ("filename", "file", "path", "image", "filepath", "file_name", "image_path", "image_id")
LABEL_COLUMNS = ("label", "class", "category", "class_name", "label_name", "target")
_ACCEPTED = f"a header with a file column ({', '.join(FILE_COLUMNS[:4])}) and a label column ({', '.join(LABEL_COLUMNS[:3])})"


def _header_columns(row: list[str], path: Path) -> tuple[int, int] | None:
    """(file column, label column) when `row` is a header; None when it is a data row. A first row
    that names no image file and no known column is a header augexport does not understand: an
    error naming it, never a class of its own."""
    cells = [c.strip().lower() for c in row]
    files = [i for i, c in enumerate(cells) if c in FILE_COLUMNS]
    labels = [i for i, c in enumerate(cells) if c in LABEL_COLUMNS]
    if files and labels:
        return files[0], labels[0]
    if row and _is_image_name(row[0].strip()):
        return None
    raise UsageError(f"--labels {path}: header {','.join(row)!r} is not accepted; accepted: {_ACCEPTED} "
                     "(e.g. filename,label), or no header and rows of filename,label")


def _parse_labels_csv(path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--labels {path}: cannot read: {exc}") from None
    while rows and all(not c.strip() for c in rows[0]):
        rows = rows[1:]
    columns = _header_columns(rows[0], path) if rows else None
    start = 2 if columns else 1
    if columns:
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows, start=start):
        if not row or all(not c.strip() for c in row):
            continue
        if columns is None and len(row) != 2:
            raise UsageError(f"--labels {path}: row {i} has {len(row)} columns; accepted: filename,label")
        fcol, lcol = columns or (0, 1)
        if len(row) <= max(fcol, lcol) or not row[fcol].strip() or not row[lcol].strip():
            raise UsageError(f"--labels {path}: row {i} has an empty filename or label; accepted: filename,label")
        out.append((row[fcol].strip(), row[lcol].strip()))
    if not out:
        raise UsageError(f"--labels {path}: no rows (expected a header `filename,label` and one row per image)")
    return out


def list_labelled_folder(root: Path, labels_csv: Path, name: str) -> SourceListing:
    rows = _parse_labels_csv(labels_csv)
    labels = sorted({label for _, label in rows})
    if all(lab.isdigit() for lab in labels):
        top = max(int(lab) for lab in labels)
        class_names = [str(i) for i in range(top + 1)]
        index = {lab: int(lab) for lab in labels}
    else:
        class_names = labels
        index = {lab: i for i, lab in enumerate(labels)}
    items, entries, problems = [], [], []
    root_resolved = root.resolve()
    seen: set[str] = set()
    for filename, label in sorted(rows):
        rel = Path(filename)
        full = (root / rel).resolve() if not rel.is_absolute() else rel.resolve()
        sid = rel.as_posix()
        if rel.is_absolute() or ".." in rel.parts or not str(full).startswith(str(root_resolved) + os.sep):
            problems.append((sid, f"--labels row {filename!r} points outside SOURCE {root}"))
            continue
        if sid in seen:
            raise UsageError(f"--labels {labels_csv}: {filename!r} is listed twice")
        seen.add(sid)
        items.append(SourceItem(source_id=sid, label=index[label], path=str(root / rel)))
        entries.append((sid, index[label], str(root / rel)))
    fp = _fingerprint(entries) + hashlib.sha256(labels_csv.read_bytes()).hexdigest()[:16]
    return SourceListing("folder+labels", str(root), name, class_names, items, fp, problems)


def list_folder(source: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None, name: str | None = None) -> SourceListing:
    """List a folder source; raises UsageError for a missing, empty or unusable SOURCE."""
    root = Path(source)
    if not root.exists():
        raise UsageError(f"SOURCE {root} does not exist")
    if not root.is_dir():
        hint = {".npz": f"; for an array file use npz:{root}", ".npy": f"; for arrays use npy:{root},LABELS.npy"}
        raise UsageError(f"SOURCE {root} is not a directory{hint.get(root.suffix.lower(), '')}")
    try:
        os.listdir(root)
    except PermissionError:
        raise UsageError(f"SOURCE {root} cannot be read (permission denied)") from None
    name = name or root.resolve().name
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise UsageError(f"--labels {labels} does not exist or is not a file")
        return list_labelled_folder(root, labels, name)
    return list_class_folders(root, name)
