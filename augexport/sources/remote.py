"""Folder sources in an object store: `s3://bucket/prefix/<class>/<image>` or a flat prefix with
`--labels` (a local CSV or a URL), listed with one recursive listing of the prefix.

The listing follows the local folder rules exactly, so the same images give the same source ids,
labels and order, hence the same shards: class names are the sorted first-level "folders" (any
key below them counts, as any directory does locally), names starting with `.` are skipped at
every level, only image extensions are read. Items carry the object's URL; workers read it.
The fingerprint hashes (source_id, label, size, ETag or modification time) of every item.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath
from typing import Any

from ..errors import UsageError
from ..fs import explain, join, open_fs, require_location
from . import SourceItem, SourceListing
from .folder import IMAGE_EXTENSIONS, label_index, read_labels


def _objects(url: str) -> dict[str, dict[str, Any]]:
    """Every object under the prefix: relative key -> listing info."""
    fs, base = open_fs(url, f"SOURCE {url}")
    try:
        found = fs.find(base, detail=True)
    except FileNotFoundError:
        found = {}
    except Exception as exc:  # the store's own errors: credentials, endpoint, permissions
        raise UsageError(f"SOURCE {url}: {explain(exc)}") from None
    prefix = base + "/"
    objects = {p[len(prefix):]: info for p, info in found.items()
               if p.startswith(prefix) and info.get("type", "file") == "file"}
    if not objects:
        raise UsageError(f"SOURCE {url} does not exist or holds no objects (check the bucket and prefix)")
    return objects


def _visible_image(rel: str) -> bool:
    parts = rel.split("/")
    return not any(p.startswith(".") or not p for p in parts) and PurePosixPath(rel).suffix.lower() in IMAGE_EXTENSIONS


def _stamp(info: dict[str, Any] | None) -> str:
    if info is None:
        return "-1\x00-1"
    version = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") or info.get("mtime")
    return f"{info.get('size', -1)}\x00{version}"


def _fingerprint(entries: list[tuple[str, int, dict[str, Any] | None]]) -> str:
    h = hashlib.sha256()
    for sid, label, info in entries:
        h.update(f"{sid}\x00{label}\x00{_stamp(info)}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _class_folders(url: str, objects: dict[str, dict[str, Any]], name: str) -> SourceListing:
    classes = sorted({rel.split("/", 1)[0] for rel in objects if "/" in rel and not rel.startswith(".")})
    if not classes:
        raise UsageError(f"SOURCE {url} has no class sub-folders (expected prefix/<class>/<image>); "
                         "for a flat prefix pass --labels labels.csv")
    items, entries, ignored = [], [], []
    for index, cls in enumerate(classes):
        for rel in sorted(r for r in objects if r.startswith(cls + "/")):
            if not _visible_image(rel[len(cls) + 1:]):  # the local rules: hidden, or not an image name
                hidden = any(p.startswith(".") for p in rel.split("/"))
                ignored.append((rel, "hidden file" if hidden else "not an image file name"))
                continue
            items.append(SourceItem(source_id=rel, label=index, path=join(url, rel)))
            entries.append((rel, index, objects[rel]))
    if not items:
        raise UsageError(f"SOURCE {url} has class folders ({', '.join(classes[:5])}) but no image files "
                         f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return SourceListing("folder", url, name, classes, items, _fingerprint(entries), [], ignored=ignored)


def _labelled(url: str, objects: dict[str, dict[str, Any]], labels_csv: str, name: str) -> SourceListing:
    rows, raw = read_labels(labels_csv)
    class_names, index = label_index(rows)
    items, entries, problems = [], [], []
    seen: set[str] = set()
    for filename, label in sorted(rows):
        rel = PurePosixPath(filename)
        sid = rel.as_posix()
        if rel.is_absolute() or ".." in rel.parts or sid in ("", "."):
            problems.append((sid, f"--labels row {filename!r} points outside SOURCE {url}"))
            continue
        if sid in seen:
            raise UsageError(f"--labels {labels_csv}: {filename!r} is listed twice")
        seen.add(sid)
        items.append(SourceItem(source_id=sid, label=index[label], path=join(url, sid)))
        entries.append((sid, index[label], objects.get(sid)))
    fp = _fingerprint(entries) + hashlib.sha256(raw).hexdigest()[:16]
    return SourceListing("folder+labels", url, name, class_names, items, fp, problems)


def list_remote_folder(url: str, labels: str | None = None, name: str | None = None) -> SourceListing:
    """List a folder source at a URL; UsageError for a missing, empty or unreachable SOURCE."""
    require_location(url, f"SOURCE {url}")
    url = url.rstrip("/")
    objects = _objects(url)
    name = name or url.rsplit("/", 1)[-1]
    return _labelled(url, objects, str(labels), name) if labels is not None else _class_folders(url, objects, name)
