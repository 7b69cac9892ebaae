"""TTA: every variant against a direct numpy/PIL/scipy computation, grouping and order, merge
methods (ties in vote included), error messages, and a Keras end-to-end run through TFDS."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageEnhance

from augexport import api
from augexport.cli import main
from augexport.errors import UsageError
from augexport.rng import example_rng
from augexport.stages.tta import crop_box, dihedral, invert
from augexport.tta import parse_variants, split_spec
from augexport.tta_merge import group_rows, merge, merge_scores, softmax
from tests.conftest import make_class_folder, smooth_image
from tests.helpers import manifest, read_records

H, W = 13, 20  # non-square on purpose


def _decode(rec: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(rec["image"][0])))


@pytest.fixture(scope="module")
def one_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    root = tmp_path_factory.mktemp("one") / "src"
    (root / "a").mkdir(parents=True)
    img = smooth_image(7, H, W)
    Image.fromarray(img).save(root / "a" / "x.png")
    return root, img


def _variants_by_name(src: Path, out: Path, spec: str, **kw) -> dict[str, tuple[np.ndarray, dict]]:
    api.tta(str(src), out, variants=spec, workers=1, encoding="png", **kw)
    return {r["variant"][0].decode(): (_decode(r), r) for r in read_records(out, "test")}


def test_dihedral_variants_match_pil(one_image, tmp_path):
    src, img = one_image
    got = _variants_by_name(src, tmp_path / "o", "d4")
    pil = Image.fromarray(img)
    T = Image.Transpose
    oracle = {"identity": img, "rot90": pil.transpose(T.ROTATE_90), "rot180": pil.transpose(T.ROTATE_180),
              "rot270": pil.transpose(T.ROTATE_270), "hflip": pil.transpose(T.FLIP_LEFT_RIGHT),
              "vflip": pil.transpose(T.FLIP_TOP_BOTTOM), "transpose": pil.transpose(T.TRANSPOSE),
              "transverse": pil.transpose(T.TRANSVERSE)}
    assert list(got) == list(oracle)
    for name, expected in oracle.items():
        np.testing.assert_array_equal(got[name][0], np.asarray(expected), err_msg=name)
    assert got["rot90"][0].shape == (W, H, 3)


def test_ten_crop_matches_slicing(one_image, tmp_path):
    src, img = one_image
    got = _variants_by_name(src, tmp_path / "o", "ten_crop:8x9")
    # torchvision FiveCrop placement; centre top = round((13-8)/2) = 2, left = round((20-9)/2) = 6 (half to even)
    boxes = {"tl": (0, 0), "tr": (0, 11), "bl": (5, 0), "br": (5, 11), "c": (2, 6)}
    names = [f"crop_{c}" for c in boxes] + [f"crop_{c}_hflip" for c in boxes]
    assert list(got) == names
    for corner, (y, x) in boxes.items():
        expected = img[y : y + 8, x : x + 9]
        np.testing.assert_array_equal(got[f"crop_{corner}"][0], expected)
        np.testing.assert_array_equal(got[f"crop_{corner}_hflip"][0], expected[:, ::-1])
        params = json.loads(got[f"crop_{corner}"][1]["params"][0])
        assert params == [{"stage": "tta", "variant": f"crop_{corner}", "kind": "crop",
                           "box": [y, x, y + 8, x + 9], "hflip": False}]


def test_crop_size_forms():
    # 0.5·13 -> 6 rows (round half to even), top round(3.5) = 4; 0.5·20 -> 10 columns, left 5
    assert crop_box(13, 20, ["frac", 0.5, 0.5], "c") == [4, 5, 10, 15]
    assert crop_box(13, 20, ["px", 4, 4], "br") == [9, 16, 13, 20]
    with pytest.raises(UsageError, match="size '0' is not accepted"):
        parse_variants("five_crop:0")


def test_scale_shift_brightness_match_scipy_and_pil(one_image, tmp_path):
    from scipy import ndimage

    src, img = one_image
    got = _variants_by_name(src, tmp_path / "o", "scale:1.25,scale:0.8,shift:2,-3,brightness:1.3,brightness:0.6")
    c = np.array([(H - 1) / 2, (W - 1) / 2])
    for f in (1.25, 0.8):
        expected = np.stack([ndimage.affine_transform(img[..., k].astype(np.float64), np.diag([1 / f, 1 / f]),
                                                      offset=c - c / f, order=1, mode="nearest")
                             for k in range(3)], axis=-1)
        diff = np.abs(got[f"scale_{f:g}"][0].astype(int) - np.rint(expected).astype(int))
        assert diff.max() <= 1, f  # only float rounding at .5 may differ
    np.testing.assert_array_equal(got["shift_2_-3"][0], ndimage.shift(img, (2, -3, 0), order=0, mode="nearest"))
    for f in (1.3, 0.6):
        expected = np.asarray(ImageEnhance.Brightness(Image.fromarray(img)).enhance(f))
        np.testing.assert_array_equal(got[f"brightness_{f:g}"][0], expected)


def test_random_variants_replay_the_stages(one_image, tmp_path):
    from augexport.pipeline import build_pipeline

    src, img = one_image
    cfg = tmp_path / "train.yaml"
    cfg.write_text("stages:\n  - cutout: {size: 0.3, count: 2}\n")
    got = _variants_by_name(src, tmp_path / "o", f"identity,random:3@{cfg}", seed=5)
    assert list(got) == ["identity", "random_0", "random_1", "random_2"]
    (stage,) = build_pipeline({"stages": [{"cutout": {"size": 0.3, "count": 2}}]}).stages
    for copy in (1, 2, 3):
        rng = example_rng(5, "a/x.png", copy)
        drawn = stage.draw(rng, img.shape)
        image, rec = got[f"random_{copy - 1}"]
        np.testing.assert_array_equal(image, stage.run(img, drawn))
        assert json.loads(rec["params"][0]) == [{"stage": "cutout", "params": drawn}]
    with pytest.raises(UsageError, match="random:N needs a training pipeline"):
        parse_variants("random:2")
    assert [v["name"] for v in parse_variants("random:2", config=str(cfg))] == ["random_0", "random_1"]


def test_grouping_order_and_manifest(tmp_path):
    src = make_class_folder(tmp_path / "src", {"b": 2, "a": 3}, size=(12, 16))
    out = tmp_path / "o"
    res = api.tta(str(src), out, variants=["identity,hflip", "shift:1,0", "rot90"], workers=2, batch_size=1,
                  image_size=16, encoding="png")
    rows = read_records(out, "test")
    names = ["identity", "hflip", "shift_1_0", "rot90"]
    sources = [f"{c}/img_{i:03d}.png" for c, n in (("a", 3), ("b", 2)) for i in range(n)]
    assert res.written == 20
    assert [r["source_id"][0].decode() for r in rows] == [s for s in sources for _ in names]
    assert [r["copy"][0] for r in rows] == list(range(4)) * 5
    assert [r["variant"][0].decode() for r in rows] == names * 5
    entry = manifest(out)["splits"]["test"]
    assert entry["shuffle"] is False
    tta = entry["tta"]
    assert [v["name"] for v in tta["variants"]] == names
    assert [(v["invertible"], v["inverse"]) for v in tta["variants"]] == [
        (True, "identity"), (True, "hflip"), (True, "shift:-1,0"), (True, "rot270")]
    assert tta["variants"][2]["exact_inverse"] is False


def test_variant_parsing_and_errors():
    assert split_spec("identity, shift:2,-3,hflip") == ["identity", "shift:2,-3", "hflip"]
    names = [v["name"] for v in parse_variants("ten_crop:0.875,scale:1.1")]
    assert names[:2] == ["crop_tl", "crop_tr"] and names[-1] == "scale_1.1" and len(names) == 11
    crops = parse_variants("five_crop:24")
    assert all(not v["invertible"] and v["inverse"] is None for v in crops)
    with pytest.raises(UsageError, match="unknown variant 'hflop'"):
        parse_variants("hflop")
    with pytest.raises(UsageError, match="'identity' is given twice"):
        parse_variants("identity,d4")
    with pytest.raises(UsageError, match="DY,DX"):
        parse_variants("shift:2")


def test_variants_that_differ_get_different_names():
    """Two distinct factors that `:g` would print alike, and crops of two sizes, are each their own
    variant; the same crop or factor given twice is still refused."""
    names = [v["name"] for v in parse_variants("scale:1.2,scale:1.2000001,shift:0.1,0.1000001")]
    assert names == ["scale_1.2", "scale_1.2000001", "shift_0.1_0.1000001"]
    crops = parse_variants("five_crop:24,ten_crop:32x28,five_crop:0.875")
    names = [v["name"] for v in crops]
    assert len(set(names)) == len(names) == 20
    assert names[:2] == ["crop_tl_24", "crop_tr_24"] and "crop_c_32x28_hflip" in names and names[-1] == "crop_c_0.875"
    assert [v["name"] for v in parse_variants("ten_crop:24")][5] == "crop_tl_hflip"  # one size: short names
    with pytest.raises(UsageError, match="'crop_tl' is given twice"):
        parse_variants("five_crop:24,five_crop:24x24")
    with pytest.raises(UsageError, match="'scale_1.2' is given twice"):
        parse_variants("scale:1.2,scale:1.20")


def test_invert_undoes_dihedral():
    x = np.arange(2 * 5 * 7, dtype=np.float32).reshape(5, 7, 2)
    for v in parse_variants("d4,brightness:0.7"):
        np.testing.assert_array_equal(invert(dihedral(x, v["params"]["op"]) if v["kind"] == "dihedral" else x, v), x)
    with pytest.raises(ValueError, match="not invertible"):
        invert(x, parse_variants("five_crop:8")[0])
    with pytest.raises(TypeError, match="the manifest's entry"):
        invert(x, "rot90")  # type: ignore[arg-type]
    assert [v["name"] for v in parse_variants("d4")] == ["identity", "rot90", "rot180", "rot270", "hflip", "vflip",
                                                         "transpose", "transverse"]  # docs/tta.md's order


def test_crop_larger_than_an_image_skips_it(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    Image.fromarray(smooth_image(1, 10, 10)).save(src / "a" / "small.png")
    Image.fromarray(smooth_image(2, 30, 30)).save(src / "a" / "big.png")
    res = api.tta(str(src), tmp_path / "o", variants="identity,five_crop:20", workers=1)
    assert (res.written, res.skipped) == (6, 1)
    err = json.loads((tmp_path / "o" / "errors-test.jsonl").read_text())
    assert err["source_id"] == "a/small.png" and "larger than" in err["error"]
    with pytest.raises(UsageError, match="crop of 20x20 is larger than the 16x16 image"):
        api.tta(str(src), tmp_path / "o2", variants="five_crop:20", image_size=16)


def test_a_shift_past_an_image_skips_it_as_an_oversized_crop_does(tmp_path):
    """Without --image-size the frame is each image's own: a shift that leaves nothing of it (every
    pixel an edge row smeared) is that image's error, as check_size makes it a usage error with one."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    Image.fromarray(smooth_image(1, 10, 12)).save(src / "a" / "small.png")
    Image.fromarray(smooth_image(2, 30, 30)).save(src / "a" / "big.png")
    res = api.tta(str(src), tmp_path / "o", variants="identity,shift:0,12", workers=1)
    assert (res.written, res.skipped) == (2, 1)
    err = json.loads((tmp_path / "o" / "errors-test.jsonl").read_text())
    assert err["source_id"] == "a/small.png" and "moves the whole 10x12 image out of the frame" in err["error"]
    res = api.tta(str(src), tmp_path / "o2", variants="shift:0.96,0", workers=1)  # round(0.96 * 10) = 10 rows; 29 of 30
    assert (res.written, res.skipped) == (1, 1)


@pytest.mark.parametrize("kw", [{"mix_method": "cutmix", "mix_p": 1.0}, {"keras": {"rotation_range": 5}},
                                {"copies": 5}, {"label_smoothing": 0.1}, {"overrides": {"copies": 2}}])
def test_export_options_that_would_change_the_variants_are_refused(tmp_path, kw):
    """api.tta took mix_method and CutMix'd the test-time views (the CLI has no such flags)."""
    src = make_class_folder(tmp_path / "src", {"a": 2})
    with pytest.raises(UsageError, match=f"tta: {sorted(kw)[0]}.* not apply to a TTA set"):
        api.tta(str(src), tmp_path / "o", variants="identity,hflip", workers=1, **kw)
    assert not (tmp_path / "o").exists()


# -- merge -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tta_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 images (labels 0, 1, 2) x 3 variants."""
    root = tmp_path_factory.mktemp("m")
    src = make_class_folder(root / "src", {"a": 1, "b": 1, "c": 1}, size=(8, 8))
    api.tta(str(src), root / "o", variants="identity,hflip,vflip", workers=1)
    return root / "o"


# rows: image 0 (label 0), image 1 (label 1), image 2 (label 2); 3 variants each
PREDS = np.array([
    [0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.35, 0.45],  # votes 0/1/2 tie; highest mean is class 1
    [0.6, 0.4, 0.0], [0.4, 0.6, 0.0], [0.0, 0.0, 1.0],  # votes tie and means tie: lowest index, 0
    [0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8],  # 2 votes for class 2
])


def test_merge_methods_on_hand_made_predictions(tta_split):
    p = PREDS.reshape(3, 3, 3)
    mean = merge(tta_split, "test", PREDS, method="mean")
    np.testing.assert_allclose(mean.merged, p.mean(axis=1))
    assert mean.predicted.tolist() == [1, 0, 2]  # image 1 mean [1/3, 1/3, 1/3]: lowest index
    assert mean.source_ids == ["a/img_000.png", "b/img_000.png", "c/img_000.png"]
    assert mean.labels.tolist() == [0, 1, 2]
    assert mean.accuracy == pytest.approx(1 / 3)  # only image 2
    assert mean.variant_accuracy == pytest.approx({"identity": 2 / 3, "hflip": 1 / 3, "vflip": 1 / 3})

    vote = merge(tta_split, "test", PREDS, method="vote")
    assert vote.predicted.tolist() == [1, 0, 2]
    np.testing.assert_allclose(vote.merged, [[1 / 3] * 3, [1 / 3] * 3, [1 / 3, 0, 2 / 3]])

    geo = merge(tta_split, "test", PREDS, method="geomean")
    g = np.exp(np.log(np.clip(p, 1e-12, None)).mean(axis=1))
    np.testing.assert_allclose(geo.merged, g / g.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(geo.merged.sum(axis=1), 1.0)
    assert geo.predicted.tolist() == [1, 0, 2]  # image 1: classes 0 and 1 tie exactly -> lowest index


def test_vote_tie_break_prefers_mean_then_index():
    probs = np.array([[[0.9, 0.1, 0.0], [0.0, 0.55, 0.45], [0.0, 0.45, 0.55]],  # 1 vote each, means .3/.367/.333
                      [[0.2, 0.8, 0.0], [0.2, 0.8, 0.0], [0.9, 0.1, 0.0]]])  # 2 votes beat a higher mean
    scores, pred = merge_scores(probs, "vote")
    assert pred.tolist() == [1, 1]
    np.testing.assert_allclose(scores, [[1 / 3] * 3, [1 / 3, 2 / 3, 0]])


def test_merge_logits_and_outputs(tta_split, tmp_path):
    logits = np.log(PREDS + 1e-3) + 5.0  # any shift: softmax is shift-invariant
    res = merge(tta_split, "test", logits, method="mean", logits=True, output=tmp_path / "m.csv")
    np.testing.assert_allclose(res.merged, softmax(logits).reshape(3, 3, 3).mean(axis=1))
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0] == "source_id,label,predicted,a,b,c"
    assert lines[1].startswith("a/img_000.png,0,") and len(lines) == 4
    np.save(tmp_path / "p.npy", PREDS)
    res = merge(tta_split, "test", tmp_path / "p.npy", method="geomean", output=tmp_path / "m.npy")
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), res.merged, rtol=1e-6)


def test_merge_errors(tta_split, tmp_path):
    with pytest.raises(UsageError, match=r"predictions have 8 rows, but split 'test' has N·K = 3·3 = 9 records"):
        merge(tta_split, "test", PREDS[:8])
    with pytest.raises(UsageError, match="expected 2-D"):
        merge(tta_split, "test", PREDS.ravel())
    with pytest.raises(UsageError, match="pass --logits"):
        merge(tta_split, "test", PREDS - 0.5)
    with pytest.raises(UsageError, match=r"values above 1 \(max 100\).*pass --logits"):  # scores, not probabilities
        merge(tta_split, "test", PREDS * 100)
    assert merge(tta_split, "test", np.minimum(PREDS * 1.000001, 1.000001)).method == "mean"  # float32 rounding
    with pytest.raises(UsageError, match="accepted: mean, vote, geomean"):
        merge(tta_split, "test", PREDS, method="median")
    with pytest.raises(UsageError, match="'nope' is not in"):
        merge(tta_split, "nope", PREDS)
    rows = [("a", 0, "identity", 0), ("a", 1, "hflip", 0), ("b", 0, "identity", 1), ("a", 1, "hflip", 0)]
    assert group_rows(rows[:2], ["identity", "hflip"])[0] == ["a"]
    with pytest.raises(UsageError, match=r"record 3 is \('a', copy 1, 'hflip'\); expected \('b', copy 1"):
        group_rows(rows, ["identity", "hflip"])
    with pytest.raises(UsageError, match="not a multiple of its 2 variants"):
        group_rows(rows[:3], ["identity", "hflip"])
    src = make_class_folder(tmp_path / "src", {"a": 1}, size=(8, 8))
    api.export(str(src), tmp_path / "plain", workers=1)
    with pytest.raises(UsageError, match="not a TTA split"):
        merge(tmp_path / "plain", "train", PREDS[:1])


def test_cli_tta_and_merge(tmp_path):
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 1}, size=(8, 10))
    out = tmp_path / "o"
    runner = CliRunner()
    r = runner.invoke(main, ["tta", str(src), str(out), "--variants", "identity,hflip", "--variants", "rot180",
                             "--workers", "1", "--quiet", "--encoding", "png"])
    assert r.exit_code == 0, r.output
    assert "9 records out" in r.output
    assert [v["name"] for v in manifest(out)["splits"]["test"]["tta"]["variants"]] == ["identity", "hflip", "rot180"]
    preds = np.tile(np.eye(3)[[0, 1, 2]], (3, 1))  # every image: variant k votes class k
    np.save(tmp_path / "p.npy", preds[:, :2] + 0.0)
    r = runner.invoke(main, ["tta-merge", str(out), "--predictions", str(tmp_path / "p.npy")])
    assert r.exit_code == 0, r.output
    np.save(tmp_path / "bad.npy", preds[:7])
    r = runner.invoke(main, ["tta-merge", str(out), "--predictions", str(tmp_path / "bad.npy")])
    assert r.exit_code == 2
    assert f"--predictions {tmp_path / 'bad.npy'} have 7 rows, but split 'test' has N·K = 3·3 = 9 records" in r.output
    r = runner.invoke(main, ["tta", str(src), str(tmp_path / "o2"), "--variants", "flip"])
    assert r.exit_code == 2 and "unknown variant 'flip'" in r.output
    np.save(tmp_path / "nan.npy", np.full((9, 2), np.nan))
    r = runner.invoke(main, ["tta-merge", str(out), "--predictions", str(tmp_path / "nan.npy")])
    assert r.exit_code == 2 and f"--predictions {tmp_path / 'nan.npy'} contain NaN" in r.output, r.output


def test_merging_a_split_that_holds_no_records_is_a_usage_error(tmp_path):
    """Every image smaller than the crop: the TTA split is written empty, and merging says so."""
    src = make_class_folder(tmp_path / "src", {"a": 2}, size=(8, 8))
    runner = CliRunner()
    r = runner.invoke(main, ["tta", str(src), str(tmp_path / "out"), "--variants", "five_crop:64", "--workers", "1"])
    assert r.exit_code == 0 and "no records written" in r.output, r.output
    np.save(tmp_path / "p.npy", np.zeros((0, 1)))
    r = runner.invoke(main, ["tta-merge", str(tmp_path / "out"), "--predictions", str(tmp_path / "p.npy")])
    assert r.exit_code == 2 and "split 'test' of" in r.output and "has no records" in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_keras_end_to_end_through_tfds(sample_data, tmp_path):
    """Train a tiny model on sample_data, predict the TTA split read through TFDS in order, merge."""
    tf = pytest.importorskip("tensorflow")
    tfds = pytest.importorskip("tensorflow_datasets")
    import keras

    out = tmp_path / "ds"
    api.export(str(sample_data), out, overrides={"image_size": 32}, workers=1, encoding="png", shuffle=True)
    api.tta(str(sample_data), out, variants="d4,five_crop:28", image_size=32, workers=1, encoding="png")
    builder = tfds.builder_from_directory(str(out))

    def prepare(ex):
        image = tf.image.resize(tf.cast(ex["image"], tf.float32) / 255.0, (32, 32))  # crops are 28x28
        return image, ex["label"]

    train = builder.as_dataset(split="train").map(prepare).repeat().batch(10)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(train, steps_per_epoch=6, epochs=1, verbose=0)

    test = builder.as_dataset(split="test", shuffle_files=False)
    ids = [ex["source_id"].decode() for ex in tfds.as_numpy(test)]
    assert ids == [r["source_id"][0].decode() for r in read_records(out, "test")]
    preds = model.predict(test.map(prepare).batch(32), verbose=0)
    assert preds.shape == (30 * 13, 3)
    res = merge(out, "test", preds, method="mean", output=tmp_path / "merged.csv")
    assert len(res.source_ids) == 30 and res.accuracy is not None
    labels = np.repeat(res.labels, 13)
    assert res.variant_accuracy["identity"] == pytest.approx(float((preds[::13].argmax(1) == labels[::13]).mean()))
    assert res.accuracy == pytest.approx(float((preds.reshape(30, 13, 3).mean(1).argmax(1) == res.labels).mean()))
    vote = merge(out, "test", preds, method="vote")
    assert vote.predicted.shape == (30,)


@pytest.mark.parametrize("variants,needle", [("random:100000000", "N <= 10000"), ("shift:99999999999999999999,0", "limited")])
def test_tta_variant_bounds(tmp_path: Path, variants: str, needle: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    res = CliRunner().invoke(main, ["tta", str(src), str(tmp_path / "out"), "--variants", variants])
    assert res.exit_code == 2 and needle in res.output


def test_tta_merge_rejects_odd_predictions(tmp_path: Path) -> None:
    import numpy as np

    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 1})
    out = tmp_path / "out"
    assert CliRunner().invoke(main, ["tta", str(src), str(out), "--variants", "identity,hflip", "--workers", "1"]).exit_code == 0
    for arr, needle in ((np.array([["x"]] * 6), "dtype"), (np.zeros((6, 0)), "expected 2-D")):
        np.save(tmp_path / "p.npy", arr)
        res = CliRunner().invoke(main, ["tta-merge", str(out), "--predictions", str(tmp_path / "p.npy")])
        assert res.exit_code == 2 and needle in res.output
    np.save(tmp_path / "p.npy", np.full((6, 2), 0.5))
    res = CliRunner().invoke(main, ["tta-merge", str(out), "--predictions", str(tmp_path / "p.npy"), "-o",
                                    str(tmp_path / "missing" / "m.csv")])
    assert res.exit_code == 2 and "does not exist" in res.output
    before = (tmp_path / "p.npy").read_bytes()
    for target, needle in ((tmp_path / "p.npy", "is the --predictions file"), (out / "m.csv", "is inside OUT")):
        res = CliRunner().invoke(main, ["tta-merge", str(out), "--predictions", str(tmp_path / "p.npy"), "-o",
                                        str(target)])
        assert res.exit_code == 2 and needle in res.output, res.output
    assert (tmp_path / "p.npy").read_bytes() == before and not (out / "m.csv").exists()


def test_crops_of_a_few_pixels_are_refused_as_typos() -> None:
    with pytest.raises(UsageError, match="pixels of at least 8"):
        parse_variants("five_crop:2")
    assert parse_variants("five_crop:8")[0]["params"]["size"] == ["px", 8, 8]


@pytest.mark.parametrize("text,named", [("stages: [{nope: {}}]\n", "unknown stage 'nope'"),
                                        ("bogus_key: 1\n", "bogus_key: unknown key"),
                                        ("seed: -3\n", "seed: -3 is out of range")])
def test_tta_checks_its_whole_config_file_and_names_it(tmp_path: Path, text: str, named: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    config = tmp_path / "pipe.yaml"
    config.write_text(text)
    res = CliRunner().invoke(main, ["tta", str(src), str(tmp_path / "out"), "--variants", "hflip", "--config",
                                    str(config), "--workers", "1"])
    assert res.exit_code == 2 and f"{config}: " in res.output and named in res.output, res.output
    assert not (tmp_path / "out").exists()
