"""Chained and switched mixing: CutMix then MixUp on the same copy, soft labels composed exactly
(the true pixel fractions and blend weights), every entry in params, a switch that follows its
probabilities, the same bytes with any worker count, on the Beam runner and on the TF batch path."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augexport import api
from augexport.cli import main
from augexport.pipeline import build_pipeline
from augexport.stages.mix import cutmix, mixup
from augexport.worker import Job, Renderer
from tests.helpers import read_records, shard_hashes
from tests.test_mix import make_folder

CHAIN = {"copies": 3, "stages": [{"cutout": {"size": 0.3, "p": 0.5}}],
         "mix": [{"method": "cutmix", "alpha": 1.0, "p": 1.0}, {"method": "mixup", "alpha": 0.4, "p": 1.0}]}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("chain") / "src", [(30, 40)] * 18, classes=3)


def _export(folder: Path, out: Path, spec: dict, **kw: object) -> list[dict]:
    api.export(str(folder), out, overrides=spec, encoding="png", workers=1, **kw)
    return read_records(out)


def test_cutmix_then_mixup_soft_labels_are_the_exact_composition(folder: Path, tmp_path: Path) -> None:
    records = _export(folder, tmp_path / "out", CHAIN)
    pipeline = build_pipeline(CHAIN)
    renderer = Renderer(Job(pipeline.to_spec(), 3, encoding="png"))
    labels = {f"class{i % 3}/img{i}.png": i % 3 for i in range(18)}
    checked = 0
    for r in records:
        params = json.loads(r["params"][0])
        mixes = [p for p in params if p["stage"] == "mix"]
        if r["copy"][0] == 0:
            assert mixes == [] and r["mix_lambda"][0] == 1.0
            continue
        assert [m["method"] for m in mixes] == ["cutmix", "mixup"]
        sid = r["source_id"][0].decode()
        # the first entry's partner is the record's mix_source_id, unless its box was empty (lambda 1)
        assert ("partner_source_id" in mixes[0]) == (mixes[0]["lambda"] == 1.0)
        # the first entry that mixed names no partner: its partner is the record's mix_source_id
        mixup_partner = mixes[1].get("partner_source_id") or r["mix_source_id"][0].decode()
        assert ("partner_source_id" in mixes[1]) == (mixes[0]["lambda"] < 1.0)

        def augmented(source: str, copy: int) -> np.ndarray:  # a partner's own augmented copy
            pixels = np.asarray(Image.open(folder / source).convert("RGB"))
            return renderer.augment(source, labels[source], copy, pixels)[0]

        y0, x0, y1, x1 = mixes[0]["box"]
        lam1 = 1 - (y1 - y0) * (x1 - x0) / (30 * 40)  # the pasted area's true pixel fraction
        lam2 = mixes[1]["lambda"]
        assert mixes[0]["lambda"] == pytest.approx(lam1)
        expected = np.zeros(3)
        expected[labels[sid]] = lam1 * lam2
        image = augmented(sid, r["copy"][0])
        if lam1 < 1:
            cut_partner = r["mix_source_id"][0].decode()
            image = cutmix(image, augmented(cut_partner, mixes[0]["partner_copy"]), mixes[0]["box"])
            expected[labels[cut_partner]] += (1 - lam1) * lam2
            assert r["mix_lambda"][0] == pytest.approx(lam1)
        else:  # an empty box pastes nothing: the first entry that mixed is MixUp
            assert r["mix_source_id"][0].decode() == mixup_partner and r["mix_lambda"][0] == pytest.approx(lam2)
        image = mixup(image, augmented(mixup_partner, mixes[1]["partner_copy"]), lam2)
        expected[labels[mixup_partner]] += 1 - lam2
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(r["image"][0]))), image)
        np.testing.assert_allclose(r["soft_label"], expected, atol=1e-6)
        assert r["soft_label"].sum() == pytest.approx(1.0, abs=1e-6)
        checked += 1
    assert checked == 18 * 3


def test_a_one_entry_list_writes_the_same_bytes_as_the_mapping(folder: Path, tmp_path: Path) -> None:
    entry = {"method": "cutmix", "alpha": 1.0, "p": 0.6}
    api.export(str(folder), tmp_path / "a", overrides={"copies": 2, "mix": entry}, workers=1)
    api.export(str(folder), tmp_path / "b", overrides={"copies": 2, "mix": [entry]}, workers=1)
    assert shard_hashes(tmp_path / "a") == shard_hashes(tmp_path / "b")


def test_adding_a_second_entry_keeps_the_first_entries_draws(folder: Path, tmp_path: Path) -> None:
    one = _export(folder, tmp_path / "one", {"copies": 2, "mix": [CHAIN["mix"][0]]})
    two = _export(folder, tmp_path / "two", {"copies": 2, "mix": CHAIN["mix"]})
    first = [[p for p in json.loads(r["params"][0]) if p["stage"] == "mix"][:1] for r in one]
    again = [[p for p in json.loads(r["params"][0]) if p["stage"] == "mix"][:1] for r in two]
    assert first == again


def test_switch_picks_one_method_per_copy_with_its_probabilities(folder: Path, tmp_path: Path) -> None:
    from scipy import stats

    records = _export(folder, tmp_path / "out", {"copies": 40, "include_original": False,
                                                 "mix": {"switch": {"cutmix": 0.25, "mixup": 0.75}, "p": 1.0}})
    methods = [json.loads(r["params"][0])[-1]["method"] for r in records]
    assert len(methods) == 18 * 40
    counts = [methods.count("cutmix"), methods.count("mixup")]
    assert stats.binomtest(counts[0], sum(counts), 0.25).pvalue > 1e-3
    spec = json.loads((tmp_path / "out" / "augexport.json").read_text())["pipeline"]["mix"]
    assert spec == {"switch": {"cutmix": 0.25, "mixup": 0.75}, "alpha": 1.0, "p": 1.0}


@pytest.mark.parametrize("workers,batch", [(2, 3), (1, 64)])
def test_chained_mixing_is_identical_across_workers_and_batch_sizes(folder: Path, tmp_path: Path,
                                                                    workers: int, batch: int) -> None:
    api.export(str(folder), tmp_path / "ref", overrides=CHAIN, workers=1, batch_size=16)
    api.export(str(folder), tmp_path / "other", overrides=CHAIN, workers=workers, batch_size=batch)
    assert shard_hashes(tmp_path / "ref") == shard_hashes(tmp_path / "other")


def test_chained_mixing_on_beam_matches_the_local_runner(folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    api.export(str(folder), tmp_path / "local", overrides=CHAIN, workers=1)
    api.export(str(folder), tmp_path / "beam", overrides=CHAIN, runner="beam")
    assert shard_hashes(tmp_path / "local") == shard_hashes(tmp_path / "beam")


def test_chained_mixing_on_the_device_path_writes_the_same_records(folder: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("keras")
    from augexport.device import FORCE_ENV

    numpy = _export(folder, tmp_path / "np", CHAIN, device="cpu")
    monkeypatch.setenv(FORCE_ENV, "1")
    dev = _export(folder, tmp_path / "dev", CHAIN, device="gpu")
    for a, b in zip(numpy, dev, strict=True):
        assert a["params"] == b["params"] and np.array_equal(a["soft_label"], b["soft_label"])
        pa = np.asarray(Image.open(io.BytesIO(a["image"][0])), dtype=int)
        pb = np.asarray(Image.open(io.BytesIO(b["image"][0])), dtype=int)
        assert np.abs(pa - pb).max() == 0  # CutMix then MixUp: the numpy kernels' arithmetic


@pytest.mark.parametrize("mix,needle", [
    ([{"method": "cutmix"}, {"method": "fusion"}], "mix[1].method: 'fusion' is not accepted; accepted: cutmix, mixup"),
    ({"switch": {"cutmix": 0.5, "blend": 0.5}}, "mix.switch.blend: unknown method; accepted: cutmix, mixup"),
    ({"switch": {"cutmix": 0, "mixup": 0}}, "mix.switch: the probabilities sum to 0"),
    ([], "mix: an empty list mixes nothing"),
    ([{"method": "mixup", "lambda": 0.3}], "mix[0].lambda: unknown key; accepted: method, alpha, p"),
])
def test_bad_mix_entries_exit_2_naming_the_path(folder: Path, tmp_path: Path, mix: object, needle: str) -> None:
    config = tmp_path / "p.json"
    config.write_text(json.dumps({"copies": 1, "mix": mix}))
    res = CliRunner().invoke(main, ["export", str(folder), str(tmp_path / "out"), "--config", str(config)])
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_an_empty_cutmix_box_names_its_partner_and_does_not_count_as_mixed(tmp_path: Path) -> None:
    """Beta(0.1, 0.1) draws lambda near 1 often: on 8x8 images the box then rounds to no pixels."""
    import augexport

    rng = np.random.default_rng(4)
    x, y = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8), np.arange(40) % 4
    mix = [{"method": "cutmix", "alpha": 0.1, "p": 1.0}, {"method": "cutmix", "alpha": 0.1, "p": 1.0}]
    augexport.export_arrays(x, y, tmp_path / "out", workers=1, overrides={"copies": 2, "mix": mix})
    empty = mixed = 0
    for rec in read_records(tmp_path / "out"):
        steps = [p for p in json.loads(rec["params"][0]) if p["stage"] == "mix"]
        mix_id = rec["mix_source_id"][0].decode()
        first = next((s for s in steps if s["lambda"] < 1.0), None)
        for s in steps:
            assert s is first or s["partner_source_id"]  # every partner can be found from the record
        if first is not None:
            mixed += 1
            assert "partner_source_id" not in first  # its partner is the record's mix_source_id
            assert mix_id and rec["mix_lambda"][0] == np.float32(first["lambda"])
        empty += sum(s["lambda"] == 1.0 for s in steps)
        if first is None:
            assert mix_id == "" and rec["mix_lambda"][0] == 1.0
    assert empty > 5 and mixed > 5
    counts = json.loads((tmp_path / "out" / "augexport.json").read_text())["splits"]["train"]["counts"]
    assert counts["mixed"] == mixed
