"""Control stages: one_of follows its weights, some_of picks n distinct children, sequential
shuffles with random_order; choices and children's params are recorded and replay the pixels."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy import stats

from augexport import api
from augexport.cli import main
from augexport.registry import build_stages, run_stages
from augexport.rng import example_rng
from tests.conftest import make_class_folder, smooth_image
from tests.helpers import read_records, shard_hashes

IMAGE = smooth_image(3, 32, 40)


def _stage(spec: dict) -> object:
    (stage,) = build_stages([spec], "stages")
    return stage


def _draws(stage: object, n: int = 3000) -> list[dict]:
    return [run_stages([stage], example_rng(0, f"img{i}", 1), IMAGE)[1][0]["params"] for i in range(n)]  # type: ignore[list-item]


def test_one_of_picks_follow_the_weights() -> None:
    stage = _stage({"one_of": {"children": [{"cutout": {}}, {"tta_dihedral": {"op": "hflip"}}, {"gridmask": {}}],
                               "weights": [1, 2, 5]}})
    picks = [d["chosen"][0] for d in _draws(stage)]
    counts = [picks.count(k) for k in range(3)]
    assert stats.chisquare(counts, np.array([1, 2, 5]) / 8 * len(picks)).pvalue > 1e-3
    assert stats.chisquare(counts).pvalue < 1e-6  # equal weights are rejected: the weights matter


def test_some_of_picks_n_distinct_children_in_range_and_order() -> None:
    stage = _stage({"some_of": {"n": [1, 3], "children": [{"cutout": {}}, {"gridmask": {}},
                                                          {"tta_dihedral": {"op": "vflip"}}, {"random_erasing": {}}]}})
    draws = _draws(stage, 2000)
    sizes = [len(d["chosen"]) for d in draws]
    assert set(sizes) == {1, 2, 3} and stats.chisquare([sizes.count(k) for k in (1, 2, 3)]).pvalue > 1e-3
    assert all(d["chosen"] == sorted(set(d["chosen"])) for d in draws)  # distinct, in the listed order
    assert all([e["stage"] for e in d["children"]] == [["cutout", "gridmask", "tta", "random_erasing"][i]
                                                      for i in d["chosen"]] for d in draws)


def test_random_order_permutes_uniformly() -> None:
    stage = _stage({"sequential": {"children": [{"cutout": {}}, {"gridmask": {}}, {"grayscale": {}}],
                                   "random_order": True}})
    orders = [tuple(d["chosen"]) for d in _draws(stage, 3000)]
    counts = [orders.count(o) for o in sorted(set(orders))]
    assert len(counts) == 6 and stats.chisquare(counts).pvalue > 1e-3


def test_nested_control_stages_replay_from_the_record(tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 4, "b": 4})
    spec = {"copies": 4, "stages": [{"some_of": {"n": 2, "random_order": True, "children": [
        {"one_of": [{"cutout": {"size": 0.4}}, {"tf_image": [{"random_brightness": {"max_delta": 0.3}}]}]},
        {"keras": {"rotation_range": 40}}, {"tta_crop": {"corner": "c", "size": ["frac", 0.8, 0.8]}}]}}]}
    out = tmp_path / "out"
    api.export(str(src), out, overrides=spec, workers=1, encoding="png")
    stage = _stage(spec["stages"][0])
    for r in read_records(out):
        if r["copy"][0] == 0:
            continue
        (entry,) = json.loads(r["params"][0])
        pixels = np.asarray(Image.open(src / r["source_id"][0].decode()).convert("RGB"))
        replayed = stage.run(pixels, entry["params"])  # type: ignore[attr-defined]
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r["image"][0]))), replayed)
    other = tmp_path / "other"
    api.export(str(src), other, overrides=spec, workers=2, batch_size=1, encoding="png")
    assert shard_hashes(out) == shard_hashes(other)


@pytest.mark.parametrize("stage,needle", [
    ({"some_of": {"n": 3, "children": [{"cutout": {}}, {"gridmask": {}}]}},
     "stages[0].some_of.n: 3 is more than the 2 children; accepted: at most 2"),
    ({"some_of": {"n": [2, 5], "children": [{"cutout": {}}]}}, "stages[0].some_of.n: [2, 5] is more than the 1 children"),
    ({"one_of": {"children": [{"cutout": {}}], "weights": [1, 2]}}, "stages[0].one_of.weights: 2 weights for 1 children"),
    ({"one_of": {"children": [{"cutout": {}}], "weight": [1]}}, "stages[0].one_of.weight: unknown key"),
    ({"one_of": []}, "stages[0].one_of.children: expected at least one child stage"),
    ({"sequential": {"children": [{"cutout": {"size": 3}}]}}, "stages[0].sequential.children[0].cutout.size: 3 is out of range"),
])
def test_bad_control_stages_exit_2_naming_the_path(tmp_path: Path, stage: dict, needle: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 1})
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"stages": [stage]}))
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--config", str(config)])
    assert res.exit_code == 2 and needle in res.output, res.output
