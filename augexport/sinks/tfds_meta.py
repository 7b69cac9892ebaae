"""`dataset_info.json` + `features.json` so that `tfds.builder_from_directory(OUT)` loads every
split. Written by hand in the exact format `tfds.folder_dataset.write_metadata` produces (checked
by a test against TFDS), so exporting never imports TensorFlow."""

from __future__ import annotations

import json
from typing import Any

from ..naming import TFDS_TEMPLATE
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


def write_metadata(outdir: OutDir, name: str, description: str, class_names: list[str], channels: int,
                   encoding: str, splits: dict[str, dict[str, Any]]) -> None:
    """`splits`: split name -> {"shard_lengths": [...], "num_bytes": int}; uncompressed splits only."""
    info = {
        "description": description,
        "fileFormat": "tfrecord",
        "name": name,
        "splits": [
            {"filepathTemplate": TFDS_TEMPLATE, "name": split, "numBytes": str(s["num_bytes"]),
             "shardLengths": [str(n) for n in s["shard_lengths"]]}
            for split, s in sorted(splits.items())
        ],
        # as_supervised=True yields (image, label), as tfds.load(..., as_supervised=True) users expect
        "supervisedKeys": {"tuple": {"items": [{"featureKey": "image"}, {"featureKey": "label"}]}},
        "version": "1.0.0",
    }
    features = json.dumps(features_json(len(class_names), channels, encoding), indent=4, sort_keys=True)
    outdir.write_atomic("features.json", features.encode())
    outdir.write_atomic("label.labels.txt", "".join(f"{c}\n" for c in class_names).encode("utf-8", "surrogateescape"))
    outdir.write_atomic("dataset_info.json", json.dumps(info, indent=2, sort_keys=True).encode())
