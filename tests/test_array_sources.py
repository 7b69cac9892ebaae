"""Array sources (`npz:PATH`, `npy:X.npy,Y.npy`, `augexport.export_arrays`) and reading back with
`augexport.load_arrays`: shapes, dtypes, value ranges, labels, class names, streaming, errors."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import augexport
from augexport import api, codec
from augexport.cli import main
from augexport.errors import UsageError
from augexport.sources.arrays import ArrayOptions, list_arrays
from tests.helpers import manifest, read_records, shard_hashes

KERAS = {"stages": [{"keras": {"rotation_range": 15, "zoom_range": 0.1, "horizontal_flip": True}}], "copies": 2}


def _fashion(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST-shaped: N×28×28 uint8 and uint8 labels 0..9, as keras.datasets hands them out."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def _by_id(out: Path) -> dict[tuple[int, int], dict[str, Any]]:
    return {(int(r["source_id"][0]), r["copy"][0]): r for r in read_records(out)}


def test_every_array_form_writes_the_same_shards(tmp_path: Path) -> None:
    x, y = _fashion()
    np.savez(tmp_path / "stored.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "packed.npz", images=x, labels=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    kw: dict[str, Any] = {"workers": 1, "overrides": KERAS, "name": "fashion"}
    api.export(f"npz:{tmp_path / 'stored.npz'}", tmp_path / "a", **kw)
    api.export(f"npz:{tmp_path / 'packed.npz'}", tmp_path / "b", x_key="images", y_key="labels", **kw)
    api.export(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}", tmp_path / "c", **kw)
    api.export(f"npy:{tmp_path / 'x.npy'}", tmp_path / "d", labels=str(tmp_path / "y.npy"), **kw)
    augexport.export_arrays(x, y, tmp_path / "e", **kw)
    augexport.export_arrays(x, y, tmp_path / "f", **{**kw, "workers": 2})
    hashes = {k: shard_hashes(tmp_path / k) for k in "abcdef"}
    assert all(h == hashes["a"] for h in hashes.values()), hashes
    assert manifest(tmp_path / "a")["channels"] == 1  # grey arrays stay grey by default


def test_originals_are_the_array_rows_and_source_id_is_the_index(tmp_path: Path) -> None:
    x, y = _fashion()
    augexport.export_arrays(x, y, tmp_path / "out", workers=1, encoding="png", overrides=KERAS)
    records = _by_id(tmp_path / "out")
    assert len(records) == 3 * len(x)
    for i in range(len(x)):
        rec = records[(i, 0)]
        assert rec["label"][0] == y[i]
        assert np.array_equal(codec.decode(rec["image"][0], channels=1)[:, :, 0], x[i])
    assert {r["source_id"][0] for r in records.values()} == {str(i).encode() for i in range(len(x))}


@pytest.mark.parametrize("kind", ["float01", "float255", "int64", "rgb", "hw1"])
def test_pixel_dtypes_and_shapes(tmp_path: Path, kind: str) -> None:
    x, y = _fashion(12)
    want = x[..., None]
    data: np.ndarray = {"float01": x.astype(np.float32) / 255.0, "float255": x.astype(np.float64),
                        "int64": x.astype(np.int64), "rgb": np.repeat(x[..., None], 3, axis=3),
                        "hw1": x[..., None]}[kind]
    if kind == "rgb":
        want = data
    augexport.export_arrays(data, y, tmp_path / "out", workers=1, encoding="png", shuffle=False)
    got, _, labels = augexport.load_arrays(tmp_path / "out")
    assert np.array_equal(got, want) and np.array_equal(labels, y)


def test_grey_arrays_with_channels_3_are_replicated(tmp_path: Path) -> None:
    x, y = _fashion(5)
    augexport.export_arrays(x, y, tmp_path / "out", workers=1, encoding="png", channels=3, shuffle=False)
    got, _, _ = augexport.load_arrays(tmp_path / "out")
    assert got.shape == (5, 28, 28, 3) and np.array_equal(got, np.repeat(x[..., None], 3, axis=3))


def test_value_range_rules(tmp_path: Path) -> None:
    x, y = _fashion(6)
    with pytest.raises(UsageError, match="values in"):
        augexport.export_arrays(x.astype(np.float32) * 2.0, y, tmp_path / "a", workers=1)
    bad = x.astype(np.float32)
    bad[0, 0, 0] = np.nan
    with pytest.raises(UsageError, match="NaN"):
        augexport.export_arrays(bad, y, tmp_path / "b", workers=1)
    with pytest.raises(UsageError, match="--value-range"):
        augexport.export_arrays(x, y, tmp_path / "c", workers=1, value_range="0..1")
    # stated explicitly: no scan; values outside are clipped
    dark = (x.astype(np.float32) / 255.0) * 0.5  # max <= 1 under auto too
    augexport.export_arrays(dark * 255.0, y, tmp_path / "d", workers=1, encoding="png", value_range="0,255",
                            shuffle=False)
    got, _, _ = augexport.load_arrays(tmp_path / "d")
    assert np.array_equal(got[..., 0], np.rint(dark * 255.0).astype(np.uint8))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # failed before OUT was made


def test_labels_as_column_or_one_hot_and_class_names(tmp_path: Path) -> None:
    x, y = _fashion(10)
    names = [f"class {i}" for i in range(10)]
    augexport.export_arrays(x, np.eye(10, dtype=np.float32)[y], tmp_path / "a", workers=1, class_names=names)
    augexport.export_arrays(x, y[:, None], tmp_path / "b", workers=1, class_names=",".join(names))
    np.savez(tmp_path / "s.npz", x=x, y=y, class_names=np.array(names))
    api.export(f"npz:{tmp_path / 's.npz'}", tmp_path / "c", workers=1, name="arrays")
    assert shard_hashes(tmp_path / "a") == shard_hashes(tmp_path / "b") == shard_hashes(tmp_path / "c")
    assert manifest(tmp_path / "c")["class_names"] == names
    soft = np.eye(10)[y] * 0.9 + 0.01
    with pytest.raises(UsageError, match="not one-hot"):
        augexport.export_arrays(x, soft, tmp_path / "d", workers=1)
    with pytest.raises(UsageError, match="X has 10 rows"):
        augexport.export_arrays(x, y[:9], tmp_path / "e", workers=1)
    with pytest.raises(UsageError, match="class-names has 3 names"):
        augexport.export_arrays(x, y, tmp_path / "f", workers=1, class_names=["a", "b", "c"])


def test_items_are_byte_ranges_of_the_file_read_in_place(tmp_path: Path) -> None:
    """Streaming: the listing holds offsets, not pixels; a stored npz and an .npy are read where they are."""
    x, y = _fashion(7)
    np.savez(tmp_path / "s.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    for source in (f"npz:{tmp_path / 's.npz'}", f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}"):
        listing = list_arrays(source)
        assert listing.spool is None
        assert all(it.data is None and it.length == 28 * 28 and it.path == source[4:].split(",")[0]
                   for it in listing.items)
        assert [it.source_id for it in listing.items] == [str(i) for i in range(7)]
        assert all(np.array_equal(it.pixels.image(it.read())[:, :, 0], x[i])  # type: ignore[union-attr]
                   for i, it in enumerate(listing.items))


def test_compressed_npz_and_memory_arrays_spill_inside_out_and_clean_up(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = _fashion(9)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=y)
    seen: list[list[str]] = []
    real = api.ExportRun._write

    def spy(self: Any, *a: Any, **kw: Any) -> Any:
        seen.append(sorted(p.name for p in self.out.iterdir()))
        return real(self, *a, **kw)

    monkeypatch.setattr(api.ExportRun, "_write", spy)
    api.export(f"npz:{tmp_path / 'c.npz'}", tmp_path / "a", workers=1)
    augexport.export_arrays(x, y, tmp_path / "b", workers=1)
    assert all(any(n.startswith(".tmp-arrays-spool-") for n in names) for names in seen)
    for out in ("a", "b"):
        assert not [p for p in (tmp_path / out).iterdir() if p.name.startswith(".tmp")]


def test_load_arrays_follows_record_order_for_shards_and_image_folders(tmp_path: Path) -> None:
    x, y = _fashion(20)
    kw: dict[str, Any] = {"workers": 1, "encoding": "png", "overrides": {**KERAS, "mix": {"method": "cutmix"}}}
    augexport.export_arrays(x, y, tmp_path / "t", **kw)
    augexport.export_arrays(x, y, tmp_path / "i", fmt="images", **kw)
    xs, soft, labels = augexport.load_arrays(tmp_path / "t")
    records = read_records(tmp_path / "t")
    assert xs.shape == (60, 28, 28, 1) and soft.dtype == np.float32 and labels.dtype == np.int64
    assert np.array_equal(soft, np.stack([r["soft_label"] for r in records]))
    assert [int(v) for v in labels] == [r["label"][0] for r in records]
    assert all(np.array_equal(xs[k], codec.decode(r["image"][0], channels=1)) for k, r in enumerate(records))
    xi, softi, labelsi = augexport.load_arrays(tmp_path / "i")
    assert np.array_equal(xi, xs) and np.array_equal(softi, soft) and np.array_equal(labelsi, labels)
    assert (soft.max(axis=1) < 1).any()  # some records are mixed: their soft labels came back


def test_load_arrays_says_why_sizes_differ(tmp_path: Path) -> None:
    from tests.conftest import make_class_folder

    src = make_class_folder(tmp_path / "src", {"a": 1, "b": 1}, size=(24, 32))
    api.export(str(src), tmp_path / "e", workers=1)  # the originals keep their sizes: (H, W) = (24, 32), (28, 38)
    with pytest.raises(UsageError, match="one array needs one size; export with --image-size") as err:
        augexport.load_arrays(tmp_path / "e")
    assert "(HxW)" in str(err.value) and ("is 28x38 (HxW), record 0 24x32" in str(err.value)
                                          or "is 24x32 (HxW), record 0 28x38" in str(err.value)), str(err.value)
    api.tta(str(src), tmp_path / "t", variants="identity,rot90", workers=1, image_size=(24, 32))
    with pytest.raises(UsageError, match="its TTA variants give different sizes"):
        augexport.load_arrays(tmp_path / "t", "test")


def test_bad_array_sources_exit_2_naming_the_flag(tmp_path: Path) -> None:
    x, y = _fashion(4)
    np.savez(tmp_path / "s.npz", x=x, y=y)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["export", *args, str(tmp_path / "out"), "--workers", "1"])

    res = run(f"npz:{tmp_path / 's.npz'}", "--x-key", "images")
    assert res.exit_code == 2 and "--x-key 'images'" in res.output and "accepted: x, y" in res.output
    res = run(f"npz:{tmp_path / 'missing.npz'}")
    assert res.exit_code == 2 and "does not exist" in res.output
    res = run(f"npy:{tmp_path / 's.npz'}")
    assert res.exit_code == 2 and "npy:X.npy,Y.npy" in res.output
    (tmp_path / "src" / "a").mkdir(parents=True)
    res = run(str(tmp_path / "src"), "--class-names", "a,b")
    assert res.exit_code == 2 and "--class-names apply to array sources only" in res.output
    np.save(tmp_path / "x5.npy", np.zeros((3, 4, 5, 2), np.uint8))
    np.save(tmp_path / "y3.npy", np.zeros(3, np.uint8))
    res = run(f"npy:{tmp_path / 'x5.npy'},{tmp_path / 'y3.npy'}")
    assert res.exit_code == 2 and "N×H×W×3" in res.output
    assert not (tmp_path / "out").exists()


def test_bad_labels_are_named_by_their_file_or_key(tmp_path: Path) -> None:
    x = _fashion(4)[0]
    np.save(tmp_path / "x.npy", x)
    for name, y, needle in (("y3.npy", np.zeros(3, np.uint8), "has shape (3,) but X has 4 rows"),
                            ("yneg.npy", np.array([0, 1, -1, 0]), "holds a negative label (-1)"),
                            ("yf.npy", np.array([0, 0.5, 1, 0]), "holds non-integer values")):
        np.save(tmp_path / name, y)
        with pytest.raises(UsageError, match="^" + re.escape(f"labels {tmp_path / name} {needle}")):
            list_arrays(f"npy:{tmp_path / 'x.npy'},{tmp_path / name}")
        with pytest.raises(UsageError, match="^" + re.escape(f"--labels {tmp_path / name} {needle}")):
            list_arrays(f"npy:{tmp_path / 'x.npy'}", ArrayOptions(labels=str(tmp_path / name)))
    np.savez(tmp_path / "s.npz", x=x, y=np.array([0, 1, -1, 0]))
    with pytest.raises(UsageError, match=r"^npz:.*s\.npz \[y\] holds a negative label"):
        list_arrays(f"npz:{tmp_path / 's.npz'}")
    with pytest.raises(UsageError, match=r"^y holds a negative label"):
        list_arrays("memory", ArrayOptions(x=x, y=np.array([0, 1, -1, 0])))


def test_export_arrays_rejects_what_is_not_an_array(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="numpy array"):
        augexport.export_arrays([[1, 2]], [0], tmp_path / "out")


def test_fingerprint_follows_the_pixels_for_resume(tmp_path: Path) -> None:
    x, y = _fashion(6)
    a = list_arrays("memory:", ArrayOptions(x=x, y=y), spool_dir=tmp_path)
    b = list_arrays("memory:", ArrayOptions(x=x.copy(), y=y), spool_dir=tmp_path)
    x2 = x.copy()
    x2[3, 4, 5] ^= 1
    c = list_arrays("memory:", ArrayOptions(x=x2, y=y), spool_dir=tmp_path)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    for listing in (a, b, c):
        listing.release()
    assert not list(tmp_path.iterdir())


def test_tfds_loads_a_grey_array_export(tmp_path: Path) -> None:
    tfds = pytest.importorskip("tensorflow_datasets")
    x, y = _fashion(8)
    augexport.export_arrays(x, y, tmp_path / "out", workers=1, encoding="png", name="fashion", shuffle=False)
    ds = tfds.builder_from_directory(str(tmp_path / "out")).as_dataset(split="train")
    images = [ex["image"].numpy() for ex in ds]
    assert images[0].shape == (28, 28, 1)
    assert hashlib.sha256(np.stack(images)[..., 0].tobytes()).digest() == hashlib.sha256(x.tobytes()).digest()


@pytest.mark.parametrize("source,url", [("npz:s3://bucket/a.npz", "s3://bucket/a.npz"),
                                        ("npy:s3://bucket/x.npy,s3://bucket/y.npy", "s3://bucket/x.npy")])
def test_an_array_file_given_as_a_url_is_named_as_unsupported_not_missing(tmp_path: Path, source: str,
                                                                           url: str) -> None:
    res = CliRunner().invoke(main, ["export", source, str(tmp_path / "out")])
    assert res.exit_code == 2 and f"{url} is a URL; array sources are read from local files" in res.output, \
        res.output
    assert not (tmp_path / "out").exists()
