"""Folder sources: `root/<class>/<image>` (class index = sorted folder names, like Keras
`image_dataset_from_directory`) or a flat folder with a `filename,label` CSV."""

from __future__ import annotations

import csv
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..fs import is_url, local_path, read_bytes
from ..targets import os_reason, resolved
from . import SourceItem, SourceListing

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".jfif"}


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


@dataclass
class Walk:
    """What walking a folder found: image files, what was passed over and why, folders it could not read."""

    files: list[tuple[str, str]] = field(default_factory=list)  # (relative posix path, absolute path)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (relative path, why)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (relative path, error)


def _walk_files(root: Path, prefix: str = "") -> Walk:
    """Every image-named file under root, sorted. Symlinked directories below root are not followed
    (no loops); symlinked files are read. Hidden entries and other extensions are listed as
    ignored; folders that cannot be read are problems (they may hold images)."""
    walk = Walk()

    def unreadable(err: OSError) -> None:
        rel = Path(err.filename).relative_to(root).as_posix() if err.filename else "."
        walk.problems.append((f"{prefix}{rel}/", f"cannot list folder: {err.strerror or err}"))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unreadable):
        here = Path(dirpath).relative_to(root)
        walk.ignored += [(f"{prefix}{(here / d).as_posix()}/", "hidden folder") for d in dirnames if d.startswith(".")]
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            rel = (here / name).as_posix()
            if name.startswith(".") or not _is_image_name(name):
                walk.ignored.append((prefix + rel, "hidden file" if name.startswith(".") else "not an image file name"))
                continue
            walk.files.append((rel, os.path.join(dirpath, name)))
    walk.files.sort()
    walk.ignored.sort()
    return walk


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


ARCHIVE_METADATA = ("__MACOSX",)


def _class_folders(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(class names, ignored entries). A class folder may be a link to a folder elsewhere (as Keras'
    `image_dataset_from_directory` follows it); inside one, links to folders are not followed, and
    a link back to SOURCE or a folder holding it is ignored (it would list SOURCE again)."""
    classes, ignored = [], []
    here = resolved(root, "SOURCE")
    for d in root.iterdir():
        if d.name.startswith(".") or not d.is_dir():  # a loop of links is no folder: is_dir() is False
            continue
        if d.name in ARCHIVE_METADATA:  # unzipped from a macOS archive: never a class of images
            ignored.append((f"{d.name}/", "archive metadata, not a class"))
            continue
        if d.is_symlink() and here.is_relative_to(resolved(d, "SOURCE class folder")):
            ignored.append((f"{d.name}/", "a link to SOURCE or a folder holding it"))
            continue
        classes.append(d.name)
    return sorted(classes), ignored


def list_class_folders(root: Path, name: str) -> SourceListing:
    classes, ignored = _class_folders(root)
    if not classes:
        raise UsageError(f"SOURCE {root} has no class sub-folders (expected root/<class>/<image>); "
                         "for a flat folder pass --labels labels.csv")
    odd = [c for c in classes if any(ch in c for ch in "\n\r\x00")]
    if odd:  # TFDS keeps class names one per line: such a name would become two classes
        raise UsageError(f"SOURCE {root}: class folder {odd[0]!r} has a line break in its name; rename it")
    items: list[SourceItem] = []
    entries = []
    listing = Walk(ignored=ignored)
    for index, cls in enumerate(classes):
        walk = _walk_files(root / cls, f"{cls}/")
        listing.ignored += walk.ignored
        listing.problems += walk.problems
        for rel, full in walk.files:
            sid = f"{cls}/{rel}"
            items.append(SourceItem(source_id=sid, label=index, path=full))
            entries.append((sid, index, full))
    if not items:
        raise UsageError(f"SOURCE {root} has class folders ({', '.join(classes[:5])}) but no image files "
                         f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return SourceListing("folder", str(root), name, classes, items, _fingerprint(entries), listing.problems,
                         ignored=listing.ignored)


FILE_COLUMNS = ("filename", "file", "path", "image", "filepath", "file_name", "image_path", "image_id")
LABEL_COLUMNS = ("label", "class", "category", "class_name", "label_name", "target")
_ACCEPTED = f"a header with a file column ({', '.join(FILE_COLUMNS[:4])}) and a label column ({', '.join(LABEL_COLUMNS[:3])})"


def _header_columns(row: list[str], path: str) -> tuple[int, int] | None:
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


def read_labels(location: str) -> tuple[list[tuple[str, str]], bytes]:
    """The (filename, label) rows of a labels CSV (a local path or a URL) and its raw bytes."""
    try:
        raw = read_bytes(location, f"--labels {location}", limit=1 << 30)
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--labels {location}: cannot read: {exc}") from None
    return parse_labels_csv(location, text), raw


def parse_labels_csv(path: str, text: str) -> list[tuple[str, str]]:
    rows = list(csv.reader(io.StringIO(text, newline="")))
    while rows and all(not c.strip() for c in rows[0]):
        rows = rows[1:]
    columns = _header_columns(rows[0], path) if rows else None
    start = 2 if columns else 1
    width = len(rows[0]) if columns else 2
    if columns:
        rows = rows[1:]
    out = []
    for i, row in enumerate(rows, start=start):
        if not row or all(not c.strip() for c in row):
            continue
        if columns is None and len(row) != 2:
            raise UsageError(f"--labels {path}: row {i} has {len(row)} columns; accepted: filename,label")
        if columns is not None and len(row) > width:  # a stray comma or an unquoted one in a name
            raise UsageError(f"--labels {path}: row {i} has {len(row)} columns but the header has {width}; quote a "
                             "filename or label that contains a comma")
        fcol, lcol = columns or (0, 1)
        if len(row) <= max(fcol, lcol) or not row[fcol].strip() or not row[lcol].strip():
            raise UsageError(f"--labels {path}: row {i} has an empty filename or label; accepted: filename,label")
        out.append((row[fcol].strip(), row[lcol].strip()))
    if not out:
        raise UsageError(f"--labels {path}: no rows (expected a header `filename,label` and one row per image)")
    return out


def label_index(rows: list[tuple[str, str]]) -> tuple[list[str], dict[str, int]]:
    """Class names and label -> index: digits are indices themselves, names are sorted."""
    labels = sorted({label for _, label in rows})
    if all(lab.isdigit() for lab in labels):
        top = max(int(lab) for lab in labels)
        return [str(i) for i in range(top + 1)], {lab: int(lab) for lab in labels}
    return labels, {lab: i for i, lab in enumerate(labels)}


def _resolved_or_none(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return None


def list_labelled_folder(root: Path, labels_csv: str, name: str) -> SourceListing:
    rows, raw = read_labels(labels_csv)
    class_names, index = label_index(rows)
    items, entries, problems = [], [], []
    root_resolved = resolved(root, "SOURCE")
    seen: set[str] = set()
    for filename, label in sorted(rows):
        rel = Path(filename)
        full = _resolved_or_none(root / rel)
        sid = rel.as_posix()
        if full is None:  # a loop of links: the engine reports the file as unreadable
            full = root_resolved / rel
        if rel.is_absolute() or ".." in rel.parts or not str(full).startswith(str(root_resolved) + os.sep):
            problems.append((sid, f"--labels row {filename!r} points outside SOURCE {root}"))
            continue
        if sid in seen:
            raise UsageError(f"--labels {labels_csv}: {filename!r} is listed twice")
        seen.add(sid)
        items.append(SourceItem(source_id=sid, label=index[label], path=str(root / rel)))
        entries.append((sid, index[label], str(root / rel)))
    if items and not any(os.path.exists(it.path) for it in items):  # stops at the first that exists
        nested = " (SOURCE has sub-folders: name files as SUBFOLDER/FILE)" if any(p.is_dir() for p in root.iterdir()) else ""
        raise UsageError(f"--labels {labels_csv}: none of its {len(items)} filenames exists under SOURCE {root} "
                         f"(e.g. {items[0].source_id!r}); filenames are relative to SOURCE{nested}")
    fp = _fingerprint(entries) + hashlib.sha256(raw).hexdigest()[:16]
    return SourceListing("folder+labels", str(root), name, class_names, items, fp, problems)


def _exists(path: Path, what: str) -> bool:
    """Path.exists, with a name too long or a parent that is a file named as the user's mistake."""
    try:
        return path.exists()
    except OSError as exc:
        raise UsageError(f"{what} {path}: {os_reason(path, exc)}") from None


def list_folder(source: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None, name: str | None = None) -> SourceListing:
    """List a folder source; raises UsageError for a missing, empty or unusable SOURCE."""
    root = Path(local_path(str(source)))
    if not _exists(root, "SOURCE"):
        raise UsageError(f"SOURCE {root} does not exist")
    if not root.is_dir():
        hint = {".npz": f"; for an array file use npz:{root}", ".npy": f"; for arrays use npy:{root},LABELS.npy"}
        raise UsageError(f"SOURCE {root} is not a directory{hint.get(root.suffix.lower(), '')}")
    try:
        os.listdir(root)
    except PermissionError:
        raise UsageError(f"SOURCE {root} cannot be read (permission denied)") from None
    name = name or resolved(root, "SOURCE").name
    if labels is not None:
        labels = str(labels)
        if not is_url(labels) and not (_exists(Path(local_path(labels)), "--labels")
                                       and Path(local_path(labels)).is_file()):
            raise UsageError(f"--labels {labels} does not exist or is not a file")
        return list_labelled_folder(root, labels, name)
    return list_class_folders(root, name)
