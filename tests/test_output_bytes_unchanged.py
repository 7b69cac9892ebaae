"""Refactors keep bytes: a fixed set of exports must reproduce the recorded sha256 of every file
they write (shards, errors files, image files). A change that alters output on purpose (a bug fix)
updates the record in the same commit and says why:

    AUGEXPORT_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_output_bytes_unchanged.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from augexport import api

GOLDEN = Path(__file__).parent / "golden" / "output_hashes.json"
ROOT = Path(__file__).resolve().parent.parent
SMALL = [48, 64]
KERAS = {"rotation_range": 25, "width_shift_range": 0.15, "height_shift_range": 0.1, "shear_range": 10,
         "zoom_range": 0.2, "horizontal_flip": True, "vertical_flip": True}

CASES: dict[str, dict[str, Any]] = {
    **{f"keras_{mode}": {"pipeline": {"copies": 2, "image_size": SMALL,
                                      "stages": [{"keras": {**KERAS, "fill_mode": mode, "cval": 77}}]}}
       for mode in ("constant", "nearest", "reflect", "wrap")},
    "keras_intensity": {"pipeline": {"copies": 2, "stages": [{"keras": {
        "rotation_range": 10, "channel_shift_range": 30.0, "brightness_range": [0.6, 1.4]}}]}},
    "imgaug": {"pipeline": {"copies": 2, "image_size": SMALL, "stages": [{"imgaug": [
        {"Fliplr": {"p": 0.5}}, {"Affine": {"rotate": [-20, 20], "scale": [0.8, 1.2]}},
        {"Multiply": {"mul": [0.8, 1.2]}}, {"GaussianBlur": {"sigma": [0.0, 1.0], "p": 0.5}}]}]}},
    "cutout": {"pipeline": {"copies": 2, "image_size": SMALL, "stages": [{"cutout": {"size": 0.3, "count": 2}}]}},
    "cutout_p": {"pipeline": {"copies": 2, "image_size": SMALL, "stages": [{"cutout": {"size": 0.3, "p": 0.5}}]}},
    "gridmask": {"pipeline": {"copies": 2, "image_size": SMALL,
                              "stages": [{"gridmask": {"ratio_factor": [0.2, 0.5], "fill_mode": "gaussian_noise"}}]}},
    "tf_image": {"pipeline": {"copies": 2, "image_size": SMALL, "stages": [{"tf_image": [
        {"random_brightness": {"max_delta": 0.15}}, {"random_contrast": {"lower": 0.8, "upper": 1.2}},
        {"random_saturation": {"lower": 0.7, "upper": 1.3}}, {"random_hue": {"max_delta": 0.04}},
        {"random_jpeg_quality": {"min_jpeg_quality": 60, "max_jpeg_quality": 95, "p": 0.5}},
        {"random_crop": {"size": 0.8}}]}]}},
    "cutmix": {"pipeline": {"copies": 3, "image_size": SMALL, "stages": [{"keras": KERAS}],
                            "mix": {"method": "cutmix", "p": 0.6}, "label_smoothing": 0.1}},
    "mixup": {"pipeline": {"copies": 2, "mix": {"method": "mixup", "alpha": 0.4, "p": 0.7}},
              "options": {"encoding": "png", "num_shards": 3}},
    "sample_pipeline": {"config": "sample_data/pipeline.yaml", "options": {"num_shards": 2}},
    "images_both": {"pipeline": {"copies": 1, "image_size": SMALL, "stages": [{"keras": KERAS}]},
                    "options": {"fmt": "both", "compression": "gzip"}},
    "grey": {"pipeline": {"copies": 1, "image_size": SMALL, "stages": [{"keras": KERAS}, {"cutout": {}}]},
             "options": {"channels": 1, "shuffle": False}},
    "tfds": {"source": "tfds:sample_photos", "pipeline": {"copies": 2, "stages": [{"keras": KERAS}],
                                                        "mix": {"method": "cutmix"}},
             "options": {"data_dir": str(ROOT / "sample_tfds"), "split": "train[:80%]"}},
    "tta": {"tta": {"variants": "d4,five_crop:0.75,scale:1.2,shift:2,-3,brightness:1.3", "image_size": SMALL}},
}


def file_hashes(out: Path) -> dict[str, str]:
    """sha256 of every file an export wrote, except the manifest, TFDS metadata and run markers
    (they hold timings and absolute paths)."""
    skip = {"augexport.json", "dataset_info.json", "features.json", "label.labels.txt", ".augexport-run"}
    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name not in skip}


def run_case(case: dict[str, Any], out: Path) -> dict[str, str]:
    options = {"workers": 1, **case.get("options", {})}
    source = case.get("source", str(ROOT / "sample_data"))
    if "tta" in case:
        api.tta(source, out, **case["tta"], **options)
    else:
        config = case.get("config")
        api.export(source, out, config=str(ROOT / config) if config else None,
                   overrides=case.get("pipeline"), **options)
    return file_hashes(out)


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_bytes_match_the_record(name: str, tmp_path: Path) -> None:
    got = run_case(CASES[name], tmp_path / "out")
    assert got, "the export wrote no files"
    if os.environ.get("AUGEXPORT_UPDATE_GOLDEN"):
        record = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        record[name] = got
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(dict(sorted(record.items())), indent=1, sort_keys=True) + "\n")
        return
    record = json.loads(GOLDEN.read_text())
    assert name in record, f"no recorded hashes for {name}: run with AUGEXPORT_UPDATE_GOLDEN=1"
    assert got == record[name]


def test_every_recorded_case_still_exists() -> None:
    assert set(json.loads(GOLDEN.read_text())) == set(CASES)


_FORKED = """
import json, os, sys
os.environ["OPENBLAS_NUM_THREADS"] = "1"  # as the CLI sets it: this process then runs one thread
from pathlib import Path
from augexport import engine
from tests.test_output_bytes_unchanged import CASES, run_case
methods, start = [], engine.worker_start_method
engine.worker_start_method = lambda: methods.append(start()) or methods[-1]
got = {}
for name in sys.argv[2:]:
    case = CASES[name]
    got[name] = run_case({**case, "options": {**case.get("options", {}), "workers": 2, "batch_size": 3}},
                         Path(sys.argv[1]) / name)
print(json.dumps({"methods": methods, "hashes": got}))
"""


def test_forked_workers_write_the_recorded_bytes(tmp_path: Path) -> None:
    """The cases again through two forked workers, as the CLI's pool runs them (the TFDS case's
    source starts TensorFlow's threads in the main process, whose workers are then spawned)."""
    import subprocess
    import sys

    names = sorted(set(CASES) - {"tfds"})
    res = subprocess.run([sys.executable, "-c", _FORKED, str(tmp_path), *names], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["methods"] and set(out["methods"]) == {"fork"}, out["methods"]
    record = json.loads(GOLDEN.read_text())
    assert out["hashes"] == {name: record[name] for name in names}
