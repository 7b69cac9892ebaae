"""One contract over every registered stage (albumentations/torchvision style): params are plain JSON
that replays the same pixels, `apply` is pure (input untouched, uint8 kept, no randomness), the same
generator state gives the same result, and every stage is documented in `augexport ops`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from augexport.ops import format_ops
from augexport.stages import builtin_stages
from tests.conftest import smooth_image

# a non-trivial spec per stage (a stage whose defaults do nothing would prove little)
SPECS = {
    "augmix": {"value_range": [0, 255], "severity": 0.5, "num_chains": 3, "chain_depth": [1, 3], "alpha": 1.0},
    "cutout": {"size": 0.3, "count": 2},
    "grayscale": {"output_channels": None, "p": 0.8},
    "gridmask": {"ratio_factor": [0.3, 0.6], "rotation_factor": 0.2},
    "imgaug": [{"Affine": {"rotate": [-20, 20]}}, {"GaussianBlur": {"sigma": [0.0, 1.0]}}, {"Fliplr": {"p": 0.5}}],
    "keras": {"rotation_range": 20, "width_shift_range": 0.1, "zoom_range": 0.2, "horizontal_flip": True,
              "brightness_range": [0.8, 1.2], "channel_shift_range": 10.0},
    "randaugment": {"value_range": [0, 255], "augmentations_per_image": 3, "magnitude": 0.4,
                    "magnitude_stddev": 0.2, "rate": 0.8},
    "random_erasing": {"p": 1.0, "mode": "pixel", "scale": [0.05, 0.4], "max_count": 3},
    "random_resized_crop": {"scale": [0.2, 0.9], "ratio": [0.6, 1.6], "interpolation": "nearest"},
    "tf_image": [{"random_brightness": {"max_delta": 0.2}}, {"random_hue": {"max_delta": 0.05}},
                 {"random_crop": {"size": 0.8}}],
    # control stages: the choice and every child's params are recorded, so a copy replays
    "one_of": {"children": [{"cutout": {"size": 0.4}}, {"tta_dihedral": {"op": "rot180"}},
                            {"tf_image": [{"random_brightness": {"max_delta": 0.3}}]}], "weights": [1, 2, 1]},
    "sequential": {"children": [{"random_erasing": {"p": 1.0}}, {"keras": {"rotation_range": 30}}],
                   "random_order": True},
    "some_of": {"n": [1, 2], "children": [{"gridmask": {}}, {"cutout": {"count": 2}},
                                          {"one_of": [{"tta_dihedral": {"op": "hflip"}}, {"grayscale": {}}]}],
                "random_order": True},
    # the TTA variant stages are deterministic: every "seed" gives the same, changed, image
    "tta_brightness": {"factor": 1.3},
    "tta_crop": {"corner": "br", "size": ["frac", 0.75, 0.75], "hflip": True},
    "tta_dihedral": {"op": "transverse"},
    "tta_scale": {"factor": 1.25},
    "tta_shift": {"offset": ["frac", 0.1, -0.2]},
}
IDENTITY_ON_GREY = {"grayscale"}  # a grey image is already grey


def test_every_registered_stage_has_a_contract_spec() -> None:
    assert set(builtin_stages()) == set(SPECS)


def test_each_builtin_module_registers_exactly_the_stages_it_is_named_for() -> None:
    """`augexport.stages.BUILTIN` lets a process import only the stage modules its pipeline names:
    the table must say, for every stage, the module that registers it."""
    from augexport.stages import BUILTIN

    by_module = {cls.__module__.rsplit(".", 1)[1] for cls in builtin_stages().values()}
    assert set(BUILTIN.values()) == by_module
    for name, cls in builtin_stages().items():
        assert cls.__module__ == f"augexport.stages.{BUILTIN[name]}", name


def test_a_pipeline_imports_only_the_stage_modules_it_names() -> None:
    import subprocess
    import sys

    code = ("import sys; from augexport.pipeline import build_pipeline; "
            "build_pipeline({'stages': [{'keras': {'rotation_range': 10}}]}); "
            "print(sorted(m for m in sys.modules if m.startswith('augexport.stages.')))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert got.strip() == "['augexport.stages.keras']"


@pytest.mark.parametrize("name", sorted(SPECS))
@pytest.mark.parametrize("channels", [3, 1])
def test_stage_contract(name: str, channels: int) -> None:
    if name == "imgaug" and channels == 1:
        pytest.skip("the spec's augmenters are colour-agnostic, but imgaug is exercised on 1 channel elsewhere")
    cls = builtin_stages()[name]
    stage = cls.from_spec(SPECS[name], f"stages[0].{name}")
    # the resolved spec rebuilds the same stage (what the manifest records and workers rebuild from)
    assert cls.from_spec(stage.to_spec(), "x").to_spec() == stage.to_spec()
    image = smooth_image(11, 37, 53, channels)
    before = image.copy()
    changed = 0
    for seed in range(12):
        out, params = stage.render(np.random.Generator(np.random.PCG64(seed)), image)  # what the stage loop does
        again = stage.render(np.random.Generator(np.random.PCG64(seed)), image)[1]
        assert params == again  # sampling depends only on the generator
        replayed = json.loads(json.dumps(params))  # plain JSON, as stored in the record
        np.testing.assert_array_equal(stage.run(image, params), out)  # apply is the pure half of render
        np.testing.assert_array_equal(image, before)  # input not modified in place
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == channels
        np.testing.assert_array_equal(stage.run(image, replayed), out)  # the record's params replay it
        changed += not np.array_equal(out, image)
    assert changed == 0 if (channels == 1 and name in IDENTITY_ON_GREY) else changed >= 6


def _ops_sections() -> dict[str, list[str]]:
    """`augexport ops` split into its stage sections: header `name: doc`, then indented rows."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in format_ops().splitlines():
        if line and not line.startswith(" ") and ": " in line:
            current = line.split(": ", 1)[0]
            sections[current] = [line]
        elif current is not None and line.startswith("  "):
            sections[current].append(line)
    return sections


@pytest.mark.parametrize("name", sorted(SPECS))
def test_ops_documents_every_row_of_every_stage(name: str) -> None:
    cls = builtin_stages()[name]
    section = _ops_sections()[name]
    assert section[0] == f"{name}: {cls.doc}"
    rows = cls.ops_rows()
    assert rows, f"{name} documents no parameter"
    for op, param, kind, doc in rows:
        head = f"{op}.{param}" if op else param
        matching = [line for line in section[1:] if line[2:].startswith(head + " ")]
        assert len(matching) == 1, f"{name}: row {head!r} missing or repeated in augexport ops"
        assert f" {kind} " in matching[0] + " " and matching[0].rstrip().endswith(doc.rstrip()), matching[0]
