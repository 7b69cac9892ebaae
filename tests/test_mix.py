"""CutMix/MixUp: the papers' maths on non-square images, exact soft labels, pixels end to end,
determinism across workers and batch sizes, the CLI flags, and the TF kernel against numpy."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augexport import api
from augexport.cli import main
from augexport.manifest import read_manifest
from augexport.records import decode_example, read_tfrecords
from augexport.stages import builtin_stages
from augexport.stages.mix import (
    apply_mix,
    match_size,
    mixup,
    sample_cutmix,
    sample_mix,
    sample_mixup,
    soft_label,
)
from tests.conftest import make_class_folder

SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"
SIZES = [(37, 90), (120, 45), (31, 32)]  # (H, W), non-square on purpose


# -- helpers -------------------------------------------------------------------------------------
def make_folder(root: Path, sizes: list[tuple[int, int]], classes: int = 3, seed: int = 1) -> Path:
    """class_k/img_i.png with distinct noise pixels of the given (H, W) sizes, cycling over classes."""
    gen = np.random.Generator(np.random.PCG64(seed))
    for i, (h, w) in enumerate(sizes):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(gen.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return root


def read_records(out: Path, split: str = "train") -> list[dict[str, Any]]:
    """Every record of a split in file order, decoded with augexport's own Example parser."""
    manifest = read_manifest(out)
    assert manifest is not None
    recs = []
    for shard in manifest["splits"][split]["shards"]:
        with open(out / shard["file"], "rb") as f:
            for data in read_tfrecords(f):
                ex = decode_example(data)
                recs.append({
                    "source_id": ex["source_id"][0].decode(), "copy": ex["copy"][0], "label": ex["label"][0],
                    "soft_label": ex["soft_label"], "mix_source_id": ex["mix_source_id"][0].decode(),
                    "mix_lambda": ex["mix_lambda"][0], "params": json.loads(ex["params"][0]),
                    "pixels": np.asarray(Image.open(io.BytesIO(ex["image"][0]))),
                })
    return recs


def shard_bytes(out: Path) -> list[bytes]:
    manifest = read_manifest(out)
    assert manifest is not None
    return [(out / s["file"]).read_bytes() for s in manifest["splits"]["train"]["shards"]]


def source_pixels(root: Path, source_id: str) -> np.ndarray:
    return np.asarray(Image.open(root / source_id).convert("RGB"))


# -- CutMix sampling: the paper's box and the exact lambda ---------------------------------------
@pytest.mark.parametrize(("height", "width"), SIZES)
def test_cutmix_box_follows_the_paper_on_non_square_images(height: int, width: int) -> None:
    for draw in range(400):
        params = sample_cutmix(np.random.Generator(np.random.PCG64(draw)), 1.0, height, width)
        # an independent replay of the same draws: lambda0, then the centre (cy, cx)
        oracle = np.random.Generator(np.random.PCG64(draw))
        lam0 = oracle.beta(1.0, 1.0)
        cy, cx = int(oracle.integers(0, height)), int(oracle.integers(0, width))
        cut_h, cut_w = int(height * math.sqrt(1 - lam0)), int(width * math.sqrt(1 - lam0))
        y0, x0 = cy - cut_h // 2, cx - cut_w // 2
        expected = [max(y0, 0), max(x0, 0), min(y0 + cut_h, height), min(x0 + cut_w, width)]
        assert params["lambda_sampled"] == lam0
        assert params["box"] == expected
        by0, bx0, by1, bx1 = params["box"]
        assert 0 <= by0 <= by1 <= height and 0 <= bx0 <= bx1 <= width
        assert by1 - by0 <= cut_h and bx1 - bx0 <= cut_w
        if 0 < y0 and y0 + cut_h < height:  # unclipped: height comes from H, width from W
            assert by1 - by0 == cut_h
        if 0 < x0 and x0 + cut_w < width:
            assert bx1 - bx0 == cut_w
        area = (by1 - by0) * (bx1 - bx0)
        assert params["lambda"] == 1.0 - area / (height * width)
        assert params["lambda"] >= lam0  # int() and clipping only shrink the pasted area


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_lambda_is_beta_alpha_alpha(alpha: float) -> None:
    from scipy import stats

    n = 3000
    gen = [np.random.Generator(np.random.PCG64(1000 + i)) for i in range(n)]
    cut = [sample_cutmix(g, alpha, 37, 90) for g in gen]
    lam0 = np.array([c["lambda_sampled"] for c in cut])
    lam = np.array([c["lambda"] for c in cut])
    mix = np.array([sample_mixup(np.random.Generator(np.random.PCG64(9000 + i)), alpha)["lambda"] for i in range(n)])
    sd = math.sqrt(1 / (4 * (2 * alpha + 1)))  # Beta(a, a): mean 1/2, variance 1/(4(2a+1))
    for sample in (lam0, mix):
        assert abs(sample.mean() - 0.5) < 4 * sd / math.sqrt(n)
        assert abs(sample.std() - sd) < 0.02
        assert stats.kstest(sample, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
    # a Uniform would fail for alpha 0.2 (the tutorials' bug): Beta(0.2, 0.2) piles up near 0 and 1
    if alpha == 0.2:
        assert stats.kstest(lam0, "uniform").pvalue < 1e-6
    # the recomputed lambda is the true pixel fraction: never below lambda0, so its mean is higher
    assert np.all(lam >= lam0) and lam.mean() > lam0.mean()


# -- soft labels ---------------------------------------------------------------------------------
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_label_matches_lambda_and_sums_to_one(smoothing: float) -> None:
    k = 5
    for draw in range(300):
        g = np.random.Generator(np.random.PCG64(draw))
        lam = sample_mix(g, "cutmix" if draw % 2 else "mixup", 0.4, 37, 90)["lambda"]
        base, partner = int(g.integers(0, k)), int(g.integers(0, k))
        y = soft_label(base, k, smoothing, partner, lam)
        assert y.dtype == np.float32 and abs(float(y.sum(dtype=np.float64)) - 1.0) < 1e-6
        clean = np.zeros(k)
        clean[base] += lam
        clean[partner] += 1 - lam
        np.testing.assert_allclose(y, clean * (1 - smoothing) + smoothing / k, atol=1e-7)


# -- kernels -------------------------------------------------------------------------------------
def test_kernels_paste_blend_resize_and_never_modify_input() -> None:
    g = np.random.Generator(np.random.PCG64(7))
    base = g.integers(0, 256, (37, 90, 3), dtype=np.uint8)
    partner = g.integers(0, 256, (50, 20, 3), dtype=np.uint8)  # another size: resized to base first
    keep_b, keep_p = base.copy(), partner.copy()
    resized = match_size(partner, base.shape)
    assert resized.shape == base.shape
    params = {"method": "cutmix", "lambda": 0.0, "box": [5, 10, 30, 70]}
    out = apply_mix(base, partner, params)
    inside = np.zeros(base.shape[:2], bool)
    inside[5:30, 10:70] = True
    assert np.array_equal(out[inside], resized[inside]) and np.array_equal(out[~inside], base[~inside])
    for lam in (0.0, 0.3, 0.77, 1.0):
        blended = apply_mix(base, partner, {"method": "mixup", "lambda": lam})
        exact = lam * base.astype(np.float64) + (1 - lam) * resized.astype(np.float64)
        assert np.abs(blended.astype(np.float64) - exact).max() <= 0.5 + 1e-3
    assert np.array_equal(base, keep_b) and np.array_equal(partner, keep_p)
    grey = mixup(base[:, :, :1], resized[:, :, :1], 0.5)
    assert grey.shape == (37, 90, 1) and match_size(partner[:, :, :1], base.shape).shape == (37, 90, 1)


# -- end to end: PNG shards read back --------------------------------------------------------------
def _mix_entry(rec: dict[str, Any]) -> dict[str, Any] | None:
    return next((p for p in rec["params"] if p.get("stage") == "mix"), None)


@pytest.mark.parametrize(("smoothing", "alpha"), [(0.0, 1.0), (0.2, 0.05)])
def test_cutmix_export_pixels_labels_and_provenance(tmp_path: Path, smoothing: float, alpha: float) -> None:
    sizes = [(24, 40), (36, 20), (30, 30), (18, 44), (40, 26), (22, 22), (28, 50), (45, 17)] * 2
    src = make_folder(tmp_path / "src", sizes)
    out = tmp_path / "out"
    api.export(str(src), out, encoding="png", workers=1, overrides={
        "copies": 2, "include_original": False, "label_smoothing": smoothing, "seed": 3,
        "mix": {"method": "cutmix", "alpha": alpha, "p": 1.0}})
    recs = read_records(out)
    labels = {r["source_id"]: r["label"] for r in recs}
    k = 3
    mixed = 0
    for rec in recs:
        entry = _mix_entry(rec)
        assert entry is not None and entry["method"] == "cutmix"  # p = 1: every copy drew a mix
        base = source_pixels(src, rec["source_id"])
        h, w = base.shape[:2]
        y0, x0, y1, x1 = entry["box"]
        assert 0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w
        assert entry["lambda"] == 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
        onehot = np.zeros(k)
        if entry["lambda"] == 1.0:  # empty box: nothing pasted, not mixed
            assert rec["mix_source_id"] == "" and rec["mix_lambda"] == 1.0
            onehot[rec["label"]] = 1.0
        else:
            mixed += 1
            partner_id = rec["mix_source_id"]
            assert partner_id and partner_id != rec["source_id"]
            assert rec["mix_lambda"] == np.float32(entry["lambda"])
            partner = match_size(source_pixels(src, partner_id), base.shape)
            inside = np.zeros((h, w), bool)
            inside[y0:y1, x0:x1] = True
            assert np.array_equal(rec["pixels"][inside], partner[inside])
            assert np.array_equal(rec["pixels"][~inside], base[~inside])
            onehot[rec["label"]] += entry["lambda"]
            onehot[labels[partner_id]] += 1.0 - entry["lambda"]
        expected = onehot * (1 - smoothing) + smoothing / k
        np.testing.assert_allclose(rec["soft_label"], expected.astype(np.float32), atol=1e-6)
        assert abs(float(rec["soft_label"].sum(dtype=np.float64)) - 1.0) < 1e-6
    # alpha 0.05 puts lambda0 near 1 often enough that some boxes are empty (those records stay unmixed)
    assert (mixed >= len(recs) // 2) if alpha == 1.0 else (0 < mixed < len(recs))
    assert read_manifest(out)["splits"]["train"]["counts"]["mixed"] == mixed


def test_partner_is_its_own_augmented_copy_and_mixup_blends(tmp_path: Path) -> None:
    """The pasted/blended partner is the partner's copy after its per-image stages (replayed here)."""
    sizes = [(24, 40), (36, 20), (30, 30), (18, 44), (40, 26), (22, 22)]
    src = make_folder(tmp_path / "src", sizes)
    out = tmp_path / "out"
    api.export(str(src), out, encoding="png", workers=1, overrides={
        "copies": 1, "include_original": False, "seed": 5, "stages": [{"cutout": {"size": 0.5, "fill": 255}}],
        "mix": {"method": "mixup", "alpha": 0.4, "p": 1.0}})
    cutout = builtin_stages()["cutout"].from_spec({"size": 0.5, "fill": 255}, "c")
    recs = read_records(out)
    by_id = {r["source_id"]: r for r in recs}
    for rec in recs:
        entry = _mix_entry(rec)
        assert entry is not None and entry["method"] == "mixup" and entry["partner_copy"] == 1
        if entry["lambda"] == 1.0:
            continue
        base = cutout.run(source_pixels(src, rec["source_id"]), rec["params"][0]["params"])
        partner_rec = by_id[rec["mix_source_id"]]
        partner = cutout.run(source_pixels(src, rec["mix_source_id"]), partner_rec["params"][0]["params"])
        assert np.array_equal(rec["pixels"], mixup(base, match_size(partner, base.shape), entry["lambda"]))
        assert rec["soft_label"][rec["label"]] >= np.float32(entry["lambda"]) - 1e-6


def _export_sample(out: Path, workers: int, batch_size: int, method: str) -> list[bytes]:
    api.export(str(SAMPLE_DATA), out, workers=workers, batch_size=batch_size, num_shards=2, overrides={
        "image_size": 48, "copies": 2, "seed": 11, "stages": [{"cutout": {"size": 0.3, "p": 0.5}}],
        "mix": {"method": method, "alpha": 0.5, "p": 0.6}})
    return shard_bytes(out)


@pytest.mark.parametrize("method", ["cutmix", "mixup"])
def test_shards_byte_identical_across_workers_and_batch_sizes(tmp_path: Path, method: str) -> None:
    one = _export_sample(tmp_path / "w1b1", 1, 1, method)
    two = _export_sample(tmp_path / "w2b7", 2, 7, method)
    assert one == two
    recs = read_records(tmp_path / "w1b1")
    assert any(r["mix_source_id"] for r in recs) and any(not r["mix_source_id"] for r in recs if r["copy"] > 0)
    assert all(r["mix_source_id"] != r["source_id"] for r in recs)


# -- CLI -------------------------------------------------------------------------------------------
def _cli(args: list[str]) -> Any:
    return CliRunner().invoke(main, ["export", *args, "--workers", "1", "--quiet", "--encoding", "png"])


def test_cli_mix_flags_without_config(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", [(20, 30), (30, 20), (25, 25), (16, 28)])
    out = tmp_path / "out"
    res = _cli([str(src), str(out), "--mix", "mixup", "--mix-alpha", "0.2", "--mix-p", "1"])
    assert res.exit_code == 0, res.output
    assert read_manifest(out)["pipeline"]["mix"] == {"method": "mixup", "alpha": 0.2, "p": 1.0}
    recs = read_records(out)
    assert {r["copy"] for r in recs} == {0, 1}  # mixing alone defaults to one augmented copy
    for rec in recs:
        entry = _mix_entry(rec)
        assert (entry is not None) == (rec["copy"] == 1)
        if entry is not None and entry["lambda"] < 1.0:
            assert rec["mix_source_id"] not in ("", rec["source_id"])


def test_cli_mix_flags_merge_into_config(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", [(20, 30), (30, 20), (25, 25)])
    cfg = tmp_path / "p.yaml"
    cfg.write_text("copies: 1\nmix:\n  method: cutmix\n  alpha: 0.5\n  p: 0.3\n")
    res = _cli([str(src), str(tmp_path / "a"), "--config", str(cfg), "--mix-p", "1"])
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "a")["pipeline"]["mix"] == {"method": "cutmix", "alpha": 0.5, "p": 1.0}
    res = _cli([str(src), str(tmp_path / "b"), "--config", str(cfg), "--mix", "none"])
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "b")["pipeline"]["mix"] is None
    assert all(not r["mix_source_id"] and r["mix_lambda"] == 1.0 for r in read_records(tmp_path / "b"))


def test_cli_mix_flags_apply_to_every_entry_of_a_chain_and_never_replace_it(tmp_path: Path) -> None:
    """--mix-p on a `mix:` list replaced the chain with one CutMix entry (MixUp silently gone)."""
    src = make_folder(tmp_path / "src", [(20, 30), (30, 20), (25, 25)])
    chain = tmp_path / "chain.yaml"
    chain.write_text("copies: 1\nmix:\n  - {method: cutmix, alpha: 1.0, p: 1.0}\n  - {method: mixup, alpha: 0.2, p: 1.0}\n")
    res = _cli([str(src), str(tmp_path / "a"), "--config", str(chain), "--mix-p", "0.8"])
    assert res.exit_code == 0, res.output
    assert read_manifest(tmp_path / "a")["pipeline"]["mix"] == [{"method": "cutmix", "alpha": 1.0, "p": 0.8},
                                                                  {"method": "mixup", "alpha": 0.2, "p": 0.8}]
    switch = tmp_path / "switch.yaml"
    switch.write_text("copies: 1\nmix: {switch: {cutmix: 1, mixup: 1}, p: 1.0}\n")
    for cfg, needle in ((chain, "is a list of entries applied in order"), (switch, "is a switch: of methods")):
        res = _cli([str(src), str(tmp_path / "b"), "--config", str(cfg), "--mix", "mixup"])
        assert res.exit_code == 2 and needle in res.output and "--mix mixup" in res.output, res.output
    assert not (tmp_path / "b").exists()


def test_cli_mix_flag_errors(tmp_path: Path) -> None:
    src = make_folder(tmp_path / "src", [(20, 30), (30, 20)])
    res = _cli([str(src), str(tmp_path / "a"), "--mix-alpha", "0.3"])
    assert res.exit_code == 2 and "add --mix cutmix|mixup" in res.output
    res = _cli([str(src), str(tmp_path / "b"), "--mix", "cutmx"])
    assert res.exit_code == 2 and "--mix: 'cutmx'" in res.output and "did you mean cutmix" in res.output
    res = _cli([str(src), str(tmp_path / "c"), "--mix", "mixup", "--mix-alpha", "0"])
    assert res.exit_code == 2 and "--mix-alpha: 0" in res.output
    res = _cli([str(src), str(tmp_path / "d"), "--mix", "cutmix", "--mix-p", "1.5"])
    assert res.exit_code == 2 and "--mix-p: 1.5" in res.output
    for name in ("a", "b", "c", "d"):
        assert not (tmp_path / name / "augexport.json").exists()
    shutil.rmtree(tmp_path / "src")


def test_stage_failing_on_some_images_skips_them_and_their_partners_stay_unmixed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from augexport.stages.cutout import Cutout
    from tests.helpers import read_records

    src = make_class_folder(tmp_path / "src", {"a": 6, "b": 6})  # heights 24, 28, 32 in turn
    real = Cutout.apply

    def picky(self, image, params):
        if image.shape[0] == 28:
            raise ValueError("cannot handle height 28")
        return real(self, image, params)

    monkeypatch.setattr(Cutout, "apply", picky)
    out = tmp_path / "out"
    res = api.export(str(src), out, workers=1, overrides={"copies": 2, "stages": [{"cutout": {}}],
                                                          "mix": {"method": "mixup", "p": 1.0}})
    assert res.skipped == 4 and res.written == 8 * 3
    errors = [json.loads(line) for line in (out / "errors-train.jsonl").read_text().splitlines()]
    assert all("a stage failed on this image" in e["error"] and "height 28" in e["error"] for e in errors)
    assert all("(28x" in e["error"] and "pixels as HxW" in e["error"] for e in errors)  # as --image-size reads
    skipped = {e["source_id"] for e in errors}
    noted = 0
    for r in read_records(out):
        assert r["mix_source_id"][0].decode() not in skipped
        params = json.loads(r["params"][0])
        notes = [p for p in params if p.get("stage") == "mix" and "skipped" in p]
        for note in notes:  # a mix that did not happen says so, naming the partner that failed
            assert note["partner_source_id"] in skipped and "height 28" in note["skipped"]
        if r["copy"][0] > 0:
            mixed = [p for p in params if p.get("stage") == "mix" and "lambda" in p]
            assert len(mixed) + len(notes) == 1  # p: 1.0: every augmented copy drew its one partner
        noted += len(notes)
    assert noted > 0



def test_a_mixup_lambda_float32_holds_as_one_is_recorded_as_no_mix() -> None:
    """Beta(0.2, 0.2) puts ~1.6% of its draws within float32's last step below 1: the pixels and
    the soft label were the base's, yet mix_source_id was set and mix_lambda read 1.0."""
    from augexport.stages.mix import sample_mixup

    rng = np.random.default_rng(0)
    draws = [sample_mixup(rng, 0.2) for _ in range(2000)]
    ones = [d for d in draws if "lambda_sampled" in d]  # (a few draws are 1.0 exactly in float64)
    assert 10 <= len(ones) <= 60 and all(d["lambda"] == 1.0 and d["lambda_sampled"] < 1.0 for d in ones)
    assert all(np.float32(d["lambda"]) < 1.0 and "lambda_sampled" not in d for d in draws if d["lambda"] != 1.0)
