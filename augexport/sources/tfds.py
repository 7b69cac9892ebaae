"""TFDS splits as a source: `tfds:NAME[/CONFIG][:VERSION]` with `--split EXPR` and `--data-dir DIR`.

Design (why a spill file). The engine orders sources by a seeded hash of their id and cuts them
into blocks of 64; mixing partners are other items of the same block. With a global seeded shuffle
one block holds examples from anywhere in the split, and TFRecord shards have no random access, so
"read in source order and buffer per block" would hold most of the dataset in memory (or re-read
the split once per block). Instead the main process iterates the `tf.data` pipeline exactly once,
in source order, with `SkipDecoding` on the image feature, and appends each example's *original
encoded bytes* (the JPEG/PNG TFDS stored) to one spill file in a temporary directory ($TMPDIR).
Each `SourceItem` keeps only (source_id, label, offset, length); workers read their byte range and
decode it like a file from a folder. Memory holds one example at a time plus the small item list
(as for folder sources); disk holds one copy of the encoded split until the listing is dropped
(a `weakref.finalize` removes the directory, also at interpreter exit). Ordering, mixing and
determinism across worker counts are then exactly those of folder sources.

`source_id` is the TFDS example id (`tfds_id`, e.g. `cifar10-train.tfrecord-00000-of-00001__42`),
or `NAME/SPLIT/index` if the builder gives none. TensorFlow and TFDS are imported only here, only in
the main process, and only when a tfds source is opened. Nothing is ever downloaded: a dataset
that is not prepared fails at once with where it looked and how to prepare it.

An augexport OUT is itself a TFDS dataset: `--data-dir PARENT` with `PARENT/NAME/dataset_info.json`
(or `PARENT/dataset_info.json` naming NAME) is opened with `tfds.builder_from_directory`; the
standard layout `PARENT/NAME[/CONFIG]/VERSION/` goes through `tfds.builder`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
import weakref
from typing import Any

from ..errors import UsageError
from ..fs import is_url, join, open_fs, scheme
from ..naming import SPOOL_PREFIX
from . import SourceItem, SourceListing

_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9_]*)(?:/(?P<config>[A-Za-z0-9_.\-]+))?"
                      r"(?::(?P<version>[0-9*]+\.[0-9*]+\.[0-9*]+))?$")
_SLICE_RE = re.compile(r"\[[^\]]*\]")


def output_split_name(expr: str) -> str:
    """Output split of a TFDS split expression: slices dropped, `+` joined by `_`
    (`train[:10%]` -> `train`, `train[:50%]+test` -> `train_test`)."""
    parts = [_SLICE_RE.sub("", p).strip() for p in str(expr).split("+")]
    return "_".join(p for p in parts if p)


def parse_spec(spec: str) -> tuple[str, str | None, str | None]:
    """`NAME[/CONFIG][:VERSION]` -> (name, config, version)."""
    m = _SPEC_RE.match(spec.strip())
    if not m:
        raise UsageError(f"SOURCE tfds:{spec} is not accepted; accepted: tfds:NAME, tfds:NAME/CONFIG, "
                         "tfds:NAME:1.2.3 or tfds:NAME/CONFIG:1.2.3")
    return m.group("name"), m.group("config"), m.group("version")


def dataset_folder(spec: str, data_dir: str | None) -> str | None:
    """The local folder a `tfds:` SOURCE is read from (every version and config of NAME), found
    without TensorFlow, so an OUT inside it is refused before anything is written; None for URLs."""
    from pathlib import Path

    root = data_dir or os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    if is_url(root):
        return None
    try:
        name = parse_spec(spec.split(":", 1)[1])[0]
    except UsageError:
        return None  # reported where the source is opened
    return str(_exported_dir(name, Path(root)) or Path(root) / name)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _data_root(data_dir: str) -> Any:
    """--data-dir as the path type TFDS itself uses (etils epath), checked to be a folder TFDS can
    read: URLs with tf.io.gfile, the layer TFDS and tf.data read them through."""
    from etils import epath

    root = epath.Path(data_dir)
    try:
        if is_url(data_dir):
            import tensorflow as tf

            ok = tf.io.gfile.exists(data_dir) and tf.io.gfile.isdir(data_dir)  # isdir hides errors
        else:
            ok = root.is_dir()
    except Exception as exc:  # tf.errors.* for URLs TensorFlow cannot open
        if "not implemented" in str(exc):
            raise UsageError(
                f"--data-dir {data_dir}: TFDS reads its data through tf.io.gfile, and this TensorFlow has no "
                f"{scheme(data_dir)}:// file system (TensorFlow 2.6+ moved s3:// to tensorflow-io, which has had no "
                "release since 0.37.1 of July 2024, older than this TensorFlow). Copy the prepared dataset to a local folder (or to gs://, which "
                "tf.io.gfile reads natively) and pass that as --data-dir") from None
        raise UsageError(f"--data-dir {data_dir}: cannot read: {_first_line(exc)}") from None
    if not ok:
        raise UsageError(f"--data-dir {data_dir} does not exist or is not a directory")
    return root


def _exported_dir(name: str, data_dir: Any) -> Any | None:
    """A dataset folder without version level (an augexport OUT): DIR/NAME or DIR itself."""
    if (data_dir / name / "dataset_info.json").is_file():
        return data_dir / name
    info = data_dir / "dataset_info.json"
    if info.is_file():
        try:
            if json.loads(info.read_text()).get("name") == name:
                return data_dir
        except (OSError, ValueError):
            return None
    return None


def _versions(data_dir: str, name: str, config: str | None) -> list[str]:
    """The prepared versions of NAME[/CONFIG] in a data dir: its VERSION/dataset_info.json folders."""
    folder = _data_root(data_dir) / name / (config or "")
    try:
        return sorted(d.name for d in folder.iterdir() if (d / "dataset_info.json").is_file())
    except OSError:
        return []


def _not_prepared(spec: str, where: str, data_dir: str | None) -> UsageError:
    given = f"--data-dir {data_dir}" if data_dir else "the default TFDS data dir (--data-dir not given; $TFDS_DATA_DIR or ~/tensorflow_datasets)"
    return UsageError(
        f"SOURCE tfds:{spec} is not prepared: looked in {where} ({given}). augexport never downloads. "
        f"Prepare it on a machine with network access (`tfds build {spec.split(':')[0]} --data_dir DIR`, or "
        f"`tfds.builder('{spec}', data_dir=DIR).download_and_prepare()`), copy DIR here and pass --data-dir DIR; "
        "an augexport output folder works too: --data-dir PARENT for PARENT/NAME/dataset_info.json")


def _quiet_tensorflow() -> None:
    """TensorFlow's start-up chatter (oneDNN, CPU features, deprecations) is not the user's business;
    an explicit TF_CPP_MIN_LOG_LEVEL still wins."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging
    import warnings

    warnings.filterwarnings("ignore", module=r"tensorflow(_datasets)?\..*")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def open_builder(spec: str, data_dir: str | None) -> Any:
    """The prepared builder for `spec`, or a UsageError right away (no network, no download)."""
    name, config, version = parse_spec(spec)
    _quiet_tensorflow()
    import tensorflow_datasets as tfds  # TF only for tfds sources

    if data_dir is not None:
        root = _data_root(data_dir)
        folder = _exported_dir(name, root) if config is None else None
        if folder is not None:
            try:
                return tfds.builder_from_directory(str(folder))
            except Exception as exc:  # any TFDS failure is a bad folder for the user
                raise UsageError(f"SOURCE tfds:{spec}: {folder} has dataset_info.json but TFDS cannot read it: "
                                 f"{_first_line(exc)}") from None
    full = name + (f"/{config}" if config else "") + (f":{version}" if version else "")
    try:
        builder = tfds.builder(full, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        found = _versions(data_dir, name, config) if data_dir is not None and version else []
        if found:
            raise UsageError(f"SOURCE tfds:{spec}: version {version} is not in --data-dir {data_dir}; accepted: "
                             f"{', '.join(found)}") from None
        where = f"--data-dir {data_dir} (as {data_dir}/{name}/VERSION/ or {data_dir}/{name}/dataset_info.json)" if data_dir else "--data-dir (not given)"
        raise UsageError(f"SOURCE tfds:{spec}: {name!r} is neither a registered TFDS dataset nor found in {where}") from None
    except (AssertionError, ValueError, TypeError, KeyError) as exc:
        raise UsageError(f"SOURCE tfds:{spec}: {_first_line(exc)}") from None
    if not builder.is_prepared():
        raise _not_prepared(spec, str(builder.data_dir), data_dir)
    return builder


def feature_keys(builder: Any, image_key: str | None, label_key: str | None) -> tuple[str, str]:
    """Image and label feature names: flags first, then `supervised_keys`, then the only Image/ClassLabel."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    sup = builder.info.supervised_keys
    sup_pair = sup[:2] if isinstance(sup, (tuple, list)) and len(sup) >= 2 and all(isinstance(k, str) for k in sup[:2]) else None

    def only(kind: type, what: str) -> str:
        found = [k for k in features.keys() if isinstance(features[k], kind)]
        if len(found) != 1:
            flag = "--image-key" if what == "image" else "--label-key"
            raise UsageError(f"SOURCE {builder.name}: cannot tell the {what} feature (supervised_keys {sup!r}, "
                             f"features {sorted(features.keys())}); pass {flag}")
        return found[0]

    image_key = image_key or (sup_pair[0] if sup_pair else only(tfds.features.Image, "image"))
    label_key = label_key or (sup_pair[1] if sup_pair else only(tfds.features.ClassLabel, "label"))
    for flag, key, kind in (("--image-key", image_key, tfds.features.Image), ("--label-key", label_key, tfds.features.ClassLabel)):
        if key not in features.keys():
            raise UsageError(f"{flag} {key!r}: {builder.name} has no such feature; accepted: {', '.join(sorted(features.keys()))}")
        if not isinstance(features[key], kind):
            raise UsageError(f"{flag} {key!r}: feature is {type(features[key]).__name__}, augexport needs "
                             f"a {kind.__name__} (accepted: {', '.join(k for k in sorted(features.keys()) if isinstance(features[k], kind)) or 'none'})")
    return image_key, label_key


def _check_slices(builder: Any, split: str) -> None:
    """A slice that ends before it starts (`train[20:10]`, `train[50%:10%]`): TFDS plans it as a
    negative count and fails only while reading, with its own traceback."""
    for part in split.split("+"):
        try:
            n = builder.info.splits[part.strip()].num_examples
        except (ValueError, AssertionError, KeyError, TypeError):
            continue  # as_dataset names what is wrong with it
        if n < 0:
            raise UsageError(f"--split {split!r}: {part.strip()!r} ends before it starts; accepted: slices "
                             "[start:end] with start <= end (TFDS syntax: train, train[:10%], train[10:20], train+test)")


def _spill(builder: Any, split: str, image_key: str, label_key: str, name: str,
           directory: str) -> tuple[list[SourceItem], str, list[tuple[str, str]]]:
    """One ordered pass over the split: encoded image bytes to `directory/images.bin`, items keep ranges."""
    import tensorflow_datasets as tfds

    decoders = tfds.decode.PartialDecoding({image_key: True, label_key: True},
                                           decoders={image_key: tfds.decode.SkipDecoding()})
    _check_slices(builder, split)
    try:
        ds = builder.as_dataset(split=split, decoders=decoders, shuffle_files=False,
                                read_config=tfds.ReadConfig(add_tfds_id=True))
    except (ValueError, AssertionError, KeyError, TypeError) as exc:
        splits = ", ".join(sorted(builder.info.splits.keys())) if builder.info.splits else "unknown"
        raise UsageError(f"--split {split!r} is not a split of {name}: {_first_line(exc).rstrip('.')}; splits: {splits} "
                         "(TFDS syntax: train, train[:10%], train[10:20], train+test)") from None
    path = join(directory, "images.bin") if is_url(directory) else os.path.join(directory, "images.bin")
    items: list[SourceItem] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    digest = hashlib.sha256(f"{name}\x00{split}\x00{image_key}\x00{label_key}\n".encode())
    with _open_spill(path) as f:
        for index, ex in enumerate(tfds.as_numpy(ds)):
            tid = ex.get("tfds_id")
            sid = tid.decode("utf-8", "surrogateescape") if isinstance(tid, bytes) and tid else f"{name}/{split}/{index}"
            if sid in seen:  # e.g. `train+train`: keep both, ids must stay unique
                sid = f"{sid}#{index}"
            seen.add(sid)
            data, label = bytes(ex[image_key]), int(ex[label_key])
            digest.update(f"{sid}\x00{label}\x00{len(data)}\n".encode("utf-8", "surrogateescape"))
            digest.update(hashlib.sha256(data).digest())
            if label < 0:
                problems.append((sid, f"label {label}: unlabelled example (feature {label_key!r})"))
                continue
            items.append(SourceItem(source_id=sid, label=label, path=path, offset=f.tell(), length=len(data)))
            f.write(data)
    return items, digest.hexdigest(), problems


def _open_spill(path: str) -> Any:
    """The spill file: local, or one object uploaded as it is written (OUT in an object store,
    where every worker, Beam's too, reads its byte ranges)."""
    if not is_url(path):
        return open(path, "wb")
    fs, key = open_fs(path, f"OUT {path}")
    return fs.open(key, "wb")


def _make_spool(spool_dir: str | None) -> str:
    if spool_dir is not None and is_url(spool_dir):
        return join(spool_dir, f"{SPOOL_PREFIX}{uuid.uuid4().hex[:8]}")
    return tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=spool_dir)


def _remove_spool(directory: str) -> None:
    if not is_url(directory):
        shutil.rmtree(directory, ignore_errors=True)
        return
    fs, key = open_fs(directory, f"OUT {directory}")
    try:
        fs.rm(key, recursive=True)
    except Exception:  # gone already, or the store is unreachable: the next run removes it
        pass


def list_tfds(spec: str, *, split: str | None = None, data_dir: str | None = None, name: str | None = None,
              image_key: str | None = None, label_key: str | None = None,
              spool_dir: str | os.PathLike[str] | None = None) -> SourceListing:
    """Open a prepared TFDS dataset and spill the split's encoded images (see the module docstring)
    into a temporary folder inside `spool_dir` (export passes OUT) or the system temp dir."""
    split = split or "train"
    builder = open_builder(spec, data_dir)
    image_key, label_key = feature_keys(builder, image_key, label_key)
    class_names = [str(n) for n in builder.info.features[label_key].names]
    ds_name = parse_spec(spec)[0]  # what the user typed; an augexport OUT may carry another name inside
    directory = _make_spool(None if spool_dir is None else str(spool_dir))
    try:
        items, fingerprint, problems = _spill(builder, split, image_key, label_key, ds_name, directory)
    except BaseException:
        _remove_spool(directory)
        raise
    if not items and not problems:
        _remove_spool(directory)
        raise UsageError(f"--split {split!r} of {ds_name} has no examples")
    version = str(builder.info.version)
    config = getattr(builder.builder_config, "name", None) if getattr(builder, "builder_config", None) else None
    location = (f"tfds:{builder.name}{'/' + config if config else ''}:{version} split={split} "
                f"data_dir={data_dir or builder.data_dir} image={image_key} label={label_key}")
    listing = SourceListing("tfds", location, name or ds_name, class_names, items, fingerprint, problems,
                            spool=directory)
    listing.cleanup = weakref.finalize(listing, _remove_spool, directory)
    return listing
