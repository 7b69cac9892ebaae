"""Per-class pipelines: a class's own stages (replace or append), its own copies, target counts
reached exactly, the manifest's per-class plan, and errors that name the classes."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from augexport import api
from augexport.cli import main
from tests.conftest import make_class_folder
from tests.helpers import manifest, read_records, shard_hashes

SPEC = {
    "copies": 2,
    "stages": [{"keras": {"rotation_range": 15}}],
    "classes": {
        "cat": {"stages": [{"cutout": {}}], "stages_mode": "append", "copies": 4},
        "dog": {"stages": [{"gridmask": {}}], "target_count": 20},
    },
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("cls") / "src", {"bird": 3, "cat": 4, "dog": 6})


def _by_class(out: Path) -> dict[str, list[dict]]:
    names = manifest(out)["class_names"]
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for r in read_records(out):
        groups[names[r["label"][0]]].append(r)
    return groups


def test_each_class_gets_its_stages_and_its_count(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    api.export(str(folder), out, overrides=SPEC, workers=1)
    groups = _by_class(out)
    assert len(groups["bird"]) == 3 * (1 + 2) and len(groups["cat"]) == 4 * (1 + 4) and len(groups["dog"]) == 20
    ran = {cls: {tuple(p["stage"] for p in json.loads(r["params"][0])) for r in rs if r["copy"][0] > 0}
           for cls, rs in groups.items()}
    assert ran == {"bird": {("keras",)}, "cat": {("keras", "cutout")}, "dog": {("gridmask",)}}
    # 20 - 6 originals = 14 copies over 6 images: two images get 3, four get 2
    per_image = collections.Counter(r["source_id"][0] for r in groups["dog"] if r["copy"][0] > 0)
    assert sorted(per_image.values()) == [2, 2, 2, 2, 3, 3]
    entry = manifest(out)["splits"]["train"]
    assert entry["label_counts"] == [9, 20, 20]
    dog = entry["class_plan"]["dog"]
    assert (dog["stages_mode"], [list(s) for s in dog["stages"]], dog["target_count"], dog["planned_records"]) == (
        "replace", [["gridmask"]], 20, 20)
    assert entry["class_plan"]["bird"] == {"planned_records": 9}


@pytest.mark.parametrize("include_original,target", [(True, 6), (True, 13), (False, 1), (False, 25)])
def test_target_count_is_reached_exactly(folder: Path, tmp_path: Path, include_original: bool, target: int) -> None:
    spec = {"copies": 1, "include_original": include_original, "stages": [{"cutout": {}}],
            "classes": {"dog": {"target_count": target}}}
    out = tmp_path / "out"
    api.export(str(folder), out, overrides=spec, workers=1)
    assert len(_by_class(out)["dog"]) == target


def test_class_plans_are_identical_across_workers_batches_and_resume(folder: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    spec = {**SPEC, "mix": {"method": "cutmix", "p": 0.7}}
    api.export(str(folder), tmp_path / "ref", overrides=spec, workers=1, shard_size="8KiB")
    api.export(str(folder), tmp_path / "w2", overrides=spec, workers=2, batch_size=3, shard_size="8KiB")
    assert shard_hashes(tmp_path / "ref") == shard_hashes(tmp_path / "w2")
    from augexport import run

    monkeypatch.setattr(run, "retire", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        api.export(str(folder), tmp_path / "res", overrides=spec, workers=1, shard_size="8KiB")
    monkeypatch.undo()
    api.export(str(folder), tmp_path / "res", overrides=spec, workers=1, shard_size="8KiB", resume=True)
    assert shard_hashes(tmp_path / "ref") == shard_hashes(tmp_path / "res")


def test_class_plans_on_beam_match_the_local_runner(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    api.export(str(folder), tmp_path / "local", overrides=SPEC, workers=1)
    api.export(str(folder), tmp_path / "beam", overrides=SPEC, runner="beam")
    assert shard_hashes(tmp_path / "local") == shard_hashes(tmp_path / "beam")


@pytest.mark.parametrize("classes,needle", [
    ({"dgo": {"copies": 1}}, "classes: unknown class name(s) 'dgo'; accepted (the source's classes): bird, cat, dog"),
    ({"dog": {"target_count": 4}}, "classes.dog.target_count: 4 is below the 6 originals of class 'dog'"),
    ({"dog": {"copies": 1, "target_count": 9}}, "classes.dog: copies and target_count are exclusive"),
    ({"dog": {"target_count": 6 + 6 * 10000 + 1}},  # beyond `copies`' limit per image (was an OOM kill)
     "classes.dog.target_count: 60007 needs more than 10000 augmented copies of each of the 6 images"),
    ({"dog": {"stages_mode": "append"}}, "classes.dog.stages_mode: applies to the class's own stages"),
    ({"dog": {"stages_mode": "merge", "stages": []}}, "classes.dog.stages_mode: 'merge' is not accepted; accepted: replace, append"),
    ({"dog": {"copeis": 2}}, "classes.dog.copeis: unknown key; accepted: stages, stages_mode, copies, target_count"),
    ({"dog": {"stages": [{"cutuot": {}}]}}, "classes.dog.stages[0]: unknown stage 'cutuot'"),
])
def test_bad_class_entries_exit_2_naming_them(folder: Path, tmp_path: Path, classes: dict, needle: str) -> None:
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"copies": 1, "classes": classes}))
    res = CliRunner().invoke(main, ["export", str(folder), str(tmp_path / "out"), "--config", str(config)])
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_class_keys_are_read_as_written_not_as_yaml_numbers_or_booleans(tmp_path: Path) -> None:
    """`1:` and `01:` were both the number 1 (one override lost, the other class without its own);
    `no:` was False. Keys stay the text they were written as, like the folder names."""
    src = make_class_folder(tmp_path / "src", {"1": 2, "01": 2, "no": 2})
    cfg = tmp_path / "p.yaml"
    cfg.write_text("copies: 0\nclasses:\n  1: {copies: 1}\n  01: {target_count: 5}\n  no: {copies: 2}\n")
    res = CliRunner().invoke(main, ["export", str(src), str(tmp_path / "out"), "--config", str(cfg), "--workers", "1",
                                    "--quiet"])
    assert res.exit_code == 0, res.output
    entry = manifest(tmp_path / "out")["splits"]["train"]
    plan = {name: p["planned_records"] for name, p in entry["class_plan"].items()}
    assert plan == {"01": 5, "1": 4, "no": 6}
