"""What OUT already holds and what this run does with it: start fresh, add a split, replace one,
or resume an interrupted run. The one room that owns resume.

The journal `.augexport-progress-SPLIT.json` is written when a run starts and rewritten (fsync,
rename) after every finished temporary shard. It holds the run's identity, the outputs an
`--overwrite` replaces (deleted only when the run finalizes) and, per finished shard, what is
needed to continue exactly where it stopped: the last planned record index, counters and errors.
`--resume` keeps shards whose sha256 still matches and redoes the rest, so the final bytes equal
those of an uninterrupted run. Journal and manifest are untrusted: every name in them must be
one `naming` builds, every field must have its type, or the file is not used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from .errors import UsageError
from .manifest import UnreadableManifest, read_manifest, split_files
from .naming import (
    IMAGES,
    JOURNAL_PREFIX,
    LOCK,
    MANIFEST,
    TFDS_METADATA,
    SplitNames,
    is_journal,
    is_plain_name,
    is_spool,
    is_temporary,
    valid_split,
)
from .outdir import OutDir, UnsafePath
from .sinks.images import images_owner
from .sinks.tfrecord import ShardInfo

MAX_JOURNAL_BYTES = 256 << 20


def identity_key(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@dataclass
class ResumeState:
    """Where an interrupted run stopped: verified finished shards and the counters after them."""

    finished: list[ShardInfo] = field(default_factory=list)
    last_planned: int = -1
    counters: dict[str, Any] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)  # the journal entries of `finished`

    def keep_records(self, records: int) -> None:
        """Keep only the finished shards that end at or before record `records` (the rest are redone)."""
        while self.entries and self.entries[-1]["state"].get("written", 0) > records:
            self.entries.pop()
            self.finished.pop()
        last = self.entries[-1] if self.entries else {"last_planned": -1, "state": {}}
        self.last_planned, self.counters = last["last_planned"], last["state"]


@dataclass
class OutPlan:
    """What this run does with OUT: the manifest it extends (None = a fresh one) and the outputs
    it replaces (deleted only when it finalizes)."""

    manifest: dict[str, Any] | None
    replaces: list[str]


class Journal:
    """`extends`: the run adds its split to the manifest in OUT (False: it writes a new one);
    `replaces`: the outputs it deletes when it finalizes."""

    def __init__(self, outdir: OutDir, names: SplitNames, identity: dict[str, Any], plan: OutPlan,
                 finished: list[dict[str, Any]] | None = None) -> None:
        self.outdir, self.name = outdir, names.journal
        self.identity = identity
        self.plan = plan
        self.shards: list[dict[str, Any]] = list(finished or [])

    def save(self) -> None:
        data = {"identity": self.identity, "extends": self.plan.manifest is not None,
                "replaces": self.plan.replaces, "shards": self.shards}
        self.outdir.write_atomic(self.name, json.dumps(data, sort_keys=True).encode())

    def record(self, info: ShardInfo, last_planned: int, counters: dict[str, Any]) -> None:
        self.shards.append({**info.to_json(), "last_planned": last_planned, "state": counters})
        self.save()

    def remove(self) -> None:
        self.outdir.unlink(self.name)


# -- reading a journal back --------------------------------------------------------------------
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _valid_counters(state: Any, num_classes: int) -> bool:
    return (isinstance(state, dict) and _is_int(state.get("written")) and _is_int(state.get("mixed"))
            and isinstance(state.get("label_counts"), list) and len(state["label_counts"]) == num_classes
            and all(_is_int(n) for n in state["label_counts"])
            and isinstance(state.get("errors"), list)
            and all(isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e) for e in state["errors"]))


def _valid_entry(entry: Any, names: SplitNames, num_classes: int) -> bool:
    return (isinstance(entry, dict) and names.is_temp_shard(entry.get("file"))
            and all(_is_int(entry.get(k)) for k in ("records", "bytes", "last_planned"))
            and isinstance(entry.get("sha256"), str) and _valid_counters(entry.get("state"), num_classes))


def is_output_name(name: Any) -> bool:
    """A name an --overwrite may delete: a shard, errors file or image folder of some split, or TFDS metadata."""
    if not isinstance(name, str):
        return False
    if name in TFDS_METADATA:
        return True
    head, _, rest = name.partition("/")
    if head == IMAGES:
        return valid_split(rest)
    if name.startswith("errors-") and name.endswith(".jsonl"):
        return valid_split(name[len("errors-"):-len(".jsonl")])
    stem, sep, _ = name.partition(".tfrecord-")
    dataset, dash, split = stem.rpartition("-")
    return bool(sep and dash and is_plain_name(name)) and SplitNames(dataset, split).is_shard(name)


def read_journal(outdir: OutDir, names: SplitNames, num_classes: int, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The journal's data when it is well-formed; None when absent, unreadable or malformed (the run
    then starts over: nothing in it can be trusted). A journal of another configuration or source
    is a usage error naming what differs, checked before its shard entries: those are judged by
    this run's dataset name and classes, so another --name or a class added would only make them
    look malformed, and the interrupted run would be dropped in silence."""
    try:
        data = json.loads(outdir.read_bytes(names.journal, MAX_JOURNAL_BYTES))
    except (OSError, ValueError, RecursionError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("identity"), dict) and isinstance(data.get("shards"), list)
            and isinstance(data.get("replaces", []), list) and isinstance(data.get("extends", True), bool)):
        return None
    _check_identity(outdir, names, data["identity"], identity)
    if not all(_valid_entry(e, names, num_classes) for e in data["shards"]):
        return None
    if not all(is_output_name(n) for n in data.get("replaces", [])):
        return None
    return data


def _take_back_final(outdir: OutDir, names: SplitNames, temp: str) -> None:
    """A run killed while finalizing may have renamed this shard already: take it back."""
    prefix = names.final_of_temp(temp, 0).rsplit("-of-", 1)[0] + "-of-"
    for entry in outdir.entries():
        if entry.startswith(prefix) and names.is_shard(entry) and outdir.is_file(entry):
            outdir.rename(entry, temp)
            return


_IDENTITY_FLAGS = {  # an identity key -> what the user gave for it
    "pipeline": "pipeline (--config, --seed, --copies, the augmentation and --image-size flags)",
    "source": "SOURCE", "fingerprint": "SOURCE contents (files added, removed or changed)", "name": "--name",
    "split": "--split", "format": "--format", "encoding": "--encoding", "quality": "--quality",
    "channels": "--channels", "num_shards": "--num-shards", "shard_bytes": "--shard-size",
    "compression": "--compression", "shuffle": "--shuffle/--no-shuffle", "max_pixels": "--max-pixels",
    "max_file_bytes": "--max-file-bytes", "tta": "--variants",
}


def _what_changed(key: str, then: Any, now: Any) -> str:
    """One differing identity entry, named as the user gave it; a scalar with its two values."""
    what = _IDENTITY_FLAGS.get(key, key)
    scalar = (int, float, str, bool, type(None))
    if isinstance(then, scalar) and isinstance(now, scalar) and what.startswith("--"):
        return f"{what} ({then!r} then, {now!r} now)"
    return what


def describe_changes(old: dict[str, Any], identity: dict[str, Any]) -> list[str]:
    """What differs between two identities (or the part of one a manifest entry shows), as the user gave it."""
    return [_what_changed(k, old.get(k), identity.get(k))
            for k in sorted(set(old) | set(identity)) if old.get(k) != identity.get(k)]


def _check_identity(outdir: OutDir, names: SplitNames, old: dict[str, Any], identity: dict[str, Any]) -> None:
    if old != identity:
        changed = describe_changes(old, identity)
        raise UsageError(f"--resume: OUT {outdir} holds an interrupted run of split {names.split!r} with a different "
                         f"{'; '.join(changed)}; rerun with the original arguments, or use --overwrite to start over")


def load_for_resume(outdir: OutDir, names: SplitNames, identity: dict[str, Any], data: dict[str, Any]) -> ResumeState:
    """Finished shards that still verify, the last planned index they cover, and the saved counters
    (`data`: the journal, from `read_journal`). A journal from another configuration or source is a
    usage error that names what differs."""
    _check_identity(outdir, names, data["identity"], identity)
    state = ResumeState()
    for entry in data["shards"]:
        if not outdir.exists(entry["file"]):
            _take_back_final(outdir, names, entry["file"])
        try:
            ok = outdir.is_file(entry["file"]) and outdir.sha256(entry["file"]) == entry["sha256"]
        except (OSError, UnsafePath):
            ok = False
        if not ok:
            break  # this one and everything after it is redone
        state.finished.append(ShardInfo(entry["file"], entry["records"], entry["bytes"], entry["sha256"]))
        state.entries.append(entry)
        state.last_planned, state.counters = entry["last_planned"], entry["state"]
    return state


def resumed_plan(outdir: OutDir, data: dict[str, Any], names: SplitNames, class_names: list[str], channels: int,
                 encoding: str) -> OutPlan:
    """The OUT plan an interrupted run recorded in its journal, against the manifest in OUT now:
    other runs may have written it since (another split finished, the whole output replaced).
    The split joins that manifest only where it still fits, as a new split must."""
    replaces = list(data.get("replaces", []))
    extends = data.get("extends", True)
    if not extends and replaces:  # it replaces the whole output it found: that manifest goes
        return OutPlan(None, replaces)
    manifest = read_manifest(outdir)
    if manifest is None:
        return OutPlan(None, replaces)
    if not _compatible(manifest, names, class_names, channels, encoding):
        raise UsageError(
            f"--resume: OUT {outdir} now holds dataset {manifest.get('name')!r} with classes "
            f"{manifest.get('class_names')}, {_channels(manifest.get('channels'))}, {manifest.get('encoding')}, "
            f"written since split {names.split!r} was interrupted; that split ({names.dataset!r}, {class_names}, "
            f"{_channels(channels)}, {encoding}) cannot join it: rerun without --resume, with --overwrite to "
            "replace the whole output, or export into another OUT")
    return OutPlan(manifest, replaces)


def _compatible(manifest: dict[str, Any], names: SplitNames, class_names: list[str], channels: int,
                encoding: str) -> bool:
    """A split of this run can sit in `manifest`'s dataset: one name, classes, channels, encoding."""
    return (manifest.get("class_names") == class_names and manifest.get("name") == names.dataset
            and manifest.get("channels") == channels and manifest.get("encoding") == encoding)


# -- OUT policy --------------------------------------------------------------------------------
def leftovers(outdir: OutDir, names: SplitNames) -> list[str]:
    """Temporary shards, image folder and journal of an interrupted run of this split."""
    found = [e for e in outdir.entries() if e.startswith(names.temp_prefix)]
    return found + [n for n in (names.journal, names.temp_images_dir) if outdir.exists(n)]


def _foreign_entries(outdir: OutDir, ignore: tuple[str, ...]) -> list[str]:
    """What OUT holds besides the lock, `ignore` (this run's spool) and augexport's own temporaries
    (which count only when they are regular files: a planted link or folder under a temporary name
    is someone else's)."""
    out = []
    for name in outdir.entries():
        if name == LOCK or name in ignore:
            continue
        if name == IMAGES and outdir.is_dir(IMAGES) and not outdir.entries(IMAGES):
            continue  # what a failed images run leaves once its temporary folder is gone
        if is_temporary(name) and not is_spool(name) and outdir.is_file(name):
            continue
        out.append(name)
    return out


def plan_out(outdir: OutDir, names: SplitNames, class_names: list[str], channels: int, encoding: str,
             overwrite: bool, resume: bool, ignore: tuple[str, ...] = (), resumable: bool = True) -> OutPlan:
    """Decide what to do with OUT (when no usable journal says it already); raise UsageError for
    anything that would lose or mix data."""
    try:
        manifest = read_manifest(outdir)
    except UnreadableManifest as exc:  # not JSON: --overwrite replaces it (as an OUT without a manifest)
        if not overwrite:
            raise UsageError(f"{exc}; pass --overwrite to replace it") from None
        manifest = None
    found = leftovers(outdir, names)
    if found and not (resume or overwrite):
        if not resumable:  # --runner beam: a failed Beam run leaves nothing to resume
            raise UsageError(f"OUT {outdir} holds an interrupted run of split {names.split!r}; pass --overwrite "
                             "to start over")
        raise UsageError(f"OUT {outdir} holds an interrupted run of split {names.split!r}; rerun the same "
                         "command with --resume to complete it, or pass --overwrite to start over")
    for name in found:  # --overwrite, or --resume without a usable journal: nothing to keep
        outdir.remove(name)
    if manifest is None:
        if _foreign_entries(outdir, ignore) and not overwrite:
            others = sorted(n[len(JOURNAL_PREFIX):-len(".json")] for n in outdir.entries()
                            if is_journal(n) and n.endswith(".json"))
            if others:  # what makes it non-empty is another split's interrupted run
                raise UsageError(f"OUT {outdir} holds an interrupted run of split {others[0]!r} and no finished "
                                 f"split yet; complete it first (the same command with --split {others[0]} "
                                 "--resume), or pass --overwrite to replace everything")
            raise UsageError(f"OUT {outdir} is not empty and has no {MANIFEST}; pass --overwrite to write into it anyway")
        return OutPlan(None, [])
    split = names.split
    if split in manifest["splits"] and not overwrite:
        raise UsageError(f"OUT {outdir} already has split {split!r}; pass --overwrite to replace it (or --split NAME for another)")
    if _compatible(manifest, names, class_names, channels, encoding):
        return OutPlan(manifest, split_files(manifest, split) if split in manifest["splits"] else [])
    if not overwrite:
        raise UsageError(
            f"OUT {outdir} holds dataset {manifest.get('name')!r} with classes {manifest.get('class_names')}, "
            f"{_channels(manifest.get('channels'))}, {manifest.get('encoding')}; this export has {names.dataset!r} "
            f"with {class_names}, {_channels(channels)}, {encoding}. Another split can be added only when these "
            "match; pass --overwrite to replace the whole output")
    everything = [f for s in manifest["splits"] for f in split_files(manifest, s)]
    return OutPlan(None, everything + [m for m in TFDS_METADATA if outdir.exists(m)])


def _channels(n: object) -> str:
    return f"{n} channel{'' if n == 1 else 's'}"


def adopt_images(outdir: OutDir, names: SplitNames, key: str, resuming: bool, replaces: list[str]) -> list[str]:
    """Image folder on resume: a run killed after renaming its finished folder (and before the
    manifest) takes it back as its temporary folder; anything else left over is not this run's.
    In an object store a rename is a copy then a delete: a folder with its marker (copied last,
    deleted first) is complete, so a final folder with this run's marker is taken back even where
    a temporary folder beside it is what an earlier copy left."""
    final, temp = names.images_dir, names.temp_images_dir
    outdir.require_dir_or_absent(final)
    outdir.require_dir_or_absent(temp)
    if resuming and (outdir.remote or not outdir.exists(temp)) and outdir.is_dir(final) \
            and images_owner(outdir, final) == key:
        outdir.remove(temp)
        outdir.rename(final, temp)
        return [p for p in replaces if p != final]
    if not resuming and outdir.exists(temp):
        outdir.remove(temp)
    return replaces


def retire(outdir: OutDir, manifest: dict[str, Any] | None, replaces: list[str], split: str) -> None:
    """Delete what --overwrite replaces, first taking it out of the manifest, so that a run killed
    in between never leaves a manifest that lists deleted files."""
    if not replaces:
        return
    if manifest is None:
        outdir.unlink(MANIFEST)
    elif split in manifest["splits"]:
        from .manifest import write_manifest  # only when a split is replaced
        from .sinks.tfds_meta import write_metadata

        rest = {**manifest, "splits": {k: v for k, v in manifest["splits"].items() if k != split}}
        write_metadata(outdir, rest)  # TFDS must not list the split either
        write_manifest(outdir, rest)
    for name in replaces:
        outdir.remove(name)
