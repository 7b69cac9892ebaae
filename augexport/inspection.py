"""`augexport inspect OUT [--verify]`: splits, counts, label histogram, mixed fraction; `--verify`
re-hashes every file the manifest lists and re-reads every record."""

from __future__ import annotations

import os
from typing import Any

from .errors import UsageError, VerifyFailed
from .manifest import read_manifest
from .naming import MANIFEST, is_journal, reads_as_shard
from .objstore import open_outdir
from .outdir import OutDir
from .reader import shard_records
from .records import decode_example
from .sinks.images import read_labels_rows
from .sinks.tfds_meta import metadata_files


def _check_shard(outdir: OutDir, shard: dict[str, Any], compression: str, verify: bool,
                 labels: list[int], problems: list[str]) -> tuple[int, int]:
    """(records, mixed) of one shard; what is wrong with it goes to `problems`."""
    name = shard["file"]
    if not outdir.exists(name):
        problems.append(f"{name}: missing")
        return 0, 0
    if not outdir.is_file(name):
        problems.append(f"{name}: not a regular file (augexport never reads through links)")
        return 0, 0
    if verify:
        digest = outdir.sha256(name)
        if digest != shard["sha256"]:
            problems.append(f"{name}: sha256 {digest[:12]}… != manifest {shard['sha256'][:12]}…")
            return 0, 0
    n = mixed = 0
    try:
        for data in shard_records(outdir, name, compression, verify=verify):
            ex = decode_example(data)
            labels[ex["label"][0]] += 1
            mixed += bool(ex["mix_lambda"][0] < 1.0)
            n += 1
    except (ValueError, OSError, EOFError, IndexError, KeyError) as exc:
        problems.append(f"{name}: unreadable: {exc}")
    if n != shard["records"]:
        problems.append(f"{name}: {n} records, manifest says {shard['records']}")
    return n, mixed


def _check_images(outdir: OutDir, entry: dict[str, Any], verify: bool, labels: list[int],
                  problems: list[str]) -> tuple[int, int]:
    """(files, mixed) of a split's image folder, as labels.csv lists them; `labels` counts their
    labels. A listed file that is missing, not a regular file or (verify) has another sha256, and
    (verify) a file the labels file does not list, is a problem, as for shards."""
    images = entry["images"]
    folder = images["dir"]
    name = f"{folder}/{images['labels_file']}"
    if not outdir.is_file(name):
        problems.append(f"{name}: {'missing' if not outdir.exists(name) else 'not a regular file'}")
        return 0, 0
    if verify and (digest := outdir.sha256(name)) != images["labels_sha256"]:
        problems.append(f"{name}: sha256 {digest[:12]}… != manifest {images['labels_sha256'][:12]}…")
        return 0, 0
    n = mixed = 0
    listed: set[str] = set()
    try:
        for row in read_labels_rows(outdir, name):
            listed.add(row.file)
            path = f"{folder}/{row.file}"
            if not outdir.is_file(path):
                problems.append(f"{path}: {'missing' if not outdir.exists(path) else 'not a regular file'}")
            elif verify and (digest := outdir.sha256(path)) != row.sha256:
                problems.append(f"{path}: sha256 {digest[:12]}… != {images['labels_file']} {row.sha256[:12]}…")
            else:
                n += 1
                mixed += row.mix_lambda < 1.0
                labels[row.label] += 1
    except (ValueError, OSError, IndexError, KeyError) as exc:
        problems.append(f"{name}: unreadable: {exc}")
        return n, mixed
    if len(listed) != images["files"]:
        problems.append(f"{name}: lists {len(listed)} image files, manifest says {images['files']}")
    if verify:
        problems += [f"{folder}/{f}: not listed in {images['labels_file']}" for f in _unlisted(outdir, folder, listed)]
    return n, mixed


def _unlisted(outdir: OutDir, folder: str, listed: set[str]) -> list[str]:
    """Files in the class folders of an image folder that its labels file does not list."""
    found = []
    for cls in outdir.entries(folder):
        if outdir.is_dir(f"{folder}/{cls}"):
            found += [f"{cls}/{f}" for f in outdir.entries(f"{folder}/{cls}") if f"{cls}/{f}" not in listed]
    return found


def _unlisted_shards(outdir: OutDir, manifest: dict[str, Any]) -> list[str]:
    """Files in OUT that a reader globbing a split's shards (`*-SPLIT.tfrecord-*`) would read but
    the manifest does not list: their records would join the split unverified."""
    listed = {s["file"] for entry in manifest["splits"].values() for s in entry["shards"]}
    problems = []
    for name in sorted(set(outdir.entries()) - listed):
        for split in sorted(manifest["splits"]):
            if reads_as_shard(name, split):
                problems.append(f"{name}: read as a shard of split {split!r} by a reader that globs its shards, "
                                "but the manifest does not list it")
    return problems


def _holds(outdir: OutDir, name: str, want: bytes) -> bool:
    try:
        return outdir.read_bytes(name, len(want)) == want
    except OSError:  # longer than `want` (UnsafePath), or unreadable
        return False


def _metadata_problems(outdir: OutDir, manifest: dict[str, Any]) -> list[str]:
    """The TFDS metadata files (what `tfds.builder_from_directory` reads) against the bytes the
    manifest implies: a changed shard length or feature makes TFDS fail or misread the split."""
    problems = []
    for name, want in metadata_files(manifest).items():
        if not outdir.is_file(name):
            problems.append(f"{name}: {'missing' if not outdir.exists(name) else 'not a regular file'}")
        elif not _holds(outdir, name, want):
            problems.append(f"{name}: differs from the TFDS metadata the manifest describes (its splits, shard "
                            "lengths, classes and features)")
    return problems


def inspect(out: str | os.PathLike[str], verify: bool = False) -> dict[str, Any]:
    """Splits, shards, counts, label histogram, mixed fraction; `verify` re-hashes every shard
    against the manifest and re-reads every record (raises VerifyFailed listing every mismatch)."""
    outdir = open_outdir(out)
    outdir.prepare()
    if not outdir.remote and os.path.exists(outdir.location) and not os.path.isdir(outdir.location):
        raise UsageError(f"{out} is not a folder; accepted: an augexport output folder (OUT)")
    manifest = read_manifest(outdir)
    if manifest is None:
        if any(is_journal(name) for name in outdir.entries()):
            raise UsageError(f"{out} has no {MANIFEST} yet: it holds an interrupted run; complete it by running the "
                             "same `augexport export` command again with --resume")
        raise UsageError(f"{out} has no {MANIFEST}: not an augexport output folder")
    problems: list[str] = []
    report: dict[str, Any] = {"out": str(out), "name": manifest["name"], "class_names": manifest["class_names"], "splits": {}}
    for split, entry in sorted(manifest["splits"].items()):
        labels = [0] * len(manifest["class_names"])
        records = mixed = 0
        for shard in entry["shards"]:
            n, m = _check_shard(outdir, shard, entry.get("compression", "none"), verify, labels, problems)
            records, mixed = records + n, mixed + m
        if entry.get("images"):
            image_labels = [0] * len(manifest["class_names"])
            files, image_mixed = _check_images(outdir, entry, verify, image_labels, problems)
            if not entry["shards"]:  # --format images: the image files are the records
                labels, records, mixed = image_labels, files, image_mixed
        report["splits"][split] = {"shards": len(entry["shards"]), "records": records, "counts": entry["counts"],
                                   "label_histogram": dict(zip(manifest["class_names"], labels, strict=True)),
                                   "mixed_fraction": mixed / records if records else 0.0,
                                   "compression": entry.get("compression", "none"),
                                   "tfds_loadable": entry.get("tfds_loadable", False),
                                   **({"images": files} if entry.get("images") else {})}
    problems += _unlisted_shards(outdir, manifest)
    problems += [f"{name}: a run of this OUT was interrupted (or is still running); complete it by running the same "
                 "`augexport export` command again with --resume" for name in sorted(outdir.entries()) if is_journal(name)]
    if verify:
        problems += _metadata_problems(outdir, manifest)
    report["problems"] = problems
    if verify and problems:
        raise VerifyFailed(f"{out}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    return report


def format_inspect(report: dict[str, Any]) -> str:
    lines = [f"{report['out']}: dataset {report['name']!r}, {len(report['class_names'])} classes"]
    for split, s in report["splits"].items():
        c = s["counts"]
        lines.append(f"  split {split}: {s['records']} records in {s['shards']} shard(s); source {c['source']}, "
                     f"skipped {c['skipped']}; mixed {s['mixed_fraction']:.1%}; compression {s['compression']}"
                     f"{'' if s['tfds_loadable'] else ' (not TFDS-loadable)'}")
        if "images" in s:
            lines.append(f"    image files: {s['images']} (images/{split}/, labels.csv)")
        width = max((len(k) for k in s["label_histogram"]), default=0)
        for cls, n in s["label_histogram"].items():
            lines.append(f"    {cls:<{width}}  {n}")
    for p in report["problems"]:
        lines.append(f"  PROBLEM: {p}")
    return "\n".join(lines)
