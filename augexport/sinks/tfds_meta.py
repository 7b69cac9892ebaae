"""`dataset_info.json` + `features.json` so that `tfds.builder_from_directory(OUT)` loads every
split. Written by hand in the exact format `tfds.folder_dataset.write_metadata` produces (checked
by a test against TFDS), so exporting never imports TensorFlow."""

from __future__ import annotations

import json
from typing import Any

from .. import __version__
from ..naming import MANIFEST, TFDS_METADATA, TFDS_TEMPLATE
from ..outdir import OutDir


def _scalar(dtype: str) -> dict[str, Any]:
    return {"pythonClassName": "tensorflow_datasets.core.features.scalar.Scalar",
            "tensor": {"dtype": dtype, "encoding": "none", "shape": {}}}


def _text() -> dict[str, Any]:
    return {"pythonClassName": "tensorflow_datasets.core.features.text_feature.Text", "text": {}}


def features_json(num_classes: int, channels: int, encoding: str) -> dict[str, Any]:
    return {
        "featuresDict": {
            "features": {
                "copy": _scalar("int64"),
                "image": {
                    "image": {"dtype": "uint8", "encodingFormat": encoding,
                              "shape": {"dimensions": ["-1", "-1", str(channels)]}},
                    "pythonClassName": "tensorflow_datasets.core.features.image_feature.Image",
                },
                "label": {"classLabel": {"numClasses": str(num_classes)},
                          "pythonClassName": "tensorflow_datasets.core.features.class_label_feature.ClassLabel"},
                "mix_lambda": _scalar("float32"),
                "mix_source_id": _text(),
                "params": _text(),
                "soft_label": {
                    "pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
                    "tensor": {"dtype": "float32", "encoding": "none", "shape": {"dimensions": [str(num_classes)]}},
                },
                "source_id": _text(),
                "variant": _text(),
            }
        },
        "pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
    }


def metadata_files(manifest: dict[str, Any]) -> dict[str, bytes]:
    """The TFDS metadata a manifest implies, file name -> bytes in the order they are written; {}
    when no split is TFDS-loadable. A function of the manifest alone (its `augexport_version`
    included), so `inspect --verify` can check the files as written."""
    splits = {split: e["shards"] for split, e in manifest["splits"].items() if e.get("tfds_loadable")}
    if not splits:
        return {}
    class_names = manifest["class_names"]
    version = manifest.get("augexport_version", __version__)
    info = {
        "description": f"Augmented by augexport {version}; see {MANIFEST}.",
        "fileFormat": "tfrecord",
        "name": manifest["name"],
        "splits": [
            {"filepathTemplate": TFDS_TEMPLATE, "name": split, "numBytes": str(sum(sh["bytes"] for sh in shards)),
             "shardLengths": [str(sh["records"]) for sh in shards]}
            for split, shards in sorted(splits.items())
        ],
        # as_supervised=True yields (image, label), as tfds.load(..., as_supervised=True) users expect
        "supervisedKeys": {"tuple": {"items": [{"featureKey": "image"}, {"featureKey": "label"}]}},
        "version": "1.0.0",
    }
    features = features_json(len(class_names), manifest["channels"], manifest["encoding"])
    return {"features.json": json.dumps(features, indent=4, sort_keys=True).encode(),
            "label.labels.txt": "".join(f"{c}\n" for c in class_names).encode("utf-8", "surrogateescape"),
            "dataset_info.json": json.dumps(info, indent=2, sort_keys=True).encode()}


def write_metadata(outdir: OutDir, manifest: dict[str, Any]) -> None:
    """Write the TFDS metadata of the manifest about to be written; where no split is loadable any
    more, remove what an earlier run wrote (it would describe splits that are gone)."""
    files = metadata_files(manifest)
    for name, data in files.items():
        outdir.write_atomic(name, data)
    if not files:
        for name in TFDS_METADATA:
            outdir.unlink(name)
