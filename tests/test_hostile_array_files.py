"""Array files a user (or an attacker) hands over damaged, oversized or crafted: each is one clean
usage error naming the file or flag, never a traceback, a crash, a write outside OUT or a half-written OUT."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import augexport
from augexport.cli import main
from augexport.errors import UsageError, VerifyFailed
from augexport.resize import ResizeMode, keras_resize
from augexport.sources.arrays import MAX_CLASSES, ArrayOptions, list_arrays
from tests.helpers import manifest


def _xy(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (n, 8, 10), dtype=np.uint8), (np.arange(n) % 3).astype(np.uint8)


def _export(*args: str) -> Any:
    return CliRunner().invoke(main, ["export", *args, "--workers", "1"])


@pytest.mark.parametrize("label", [2**40, MAX_CLASSES, 2**63 + 5, 1e30])
def test_huge_labels_are_refused_before_any_work(tmp_path: Path, label: float) -> None:
    x, _ = _xy()
    y = np.array([0, 1, 2, 0, 1, label], dtype=np.float64 if isinstance(label, float) else np.uint64)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    res = _export(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}", str(tmp_path / "out"))
    assert res.exit_code == 2, res.output
    assert "accepted: class indices below 100,000" in res.output and "negative" not in res.output
    assert not (tmp_path / "out").exists()


def test_one_below_the_class_limit_is_a_label_like_any_other() -> None:
    from augexport.sources.arrays import labels_from

    labels, classes = labels_from(np.array([0, MAX_CLASSES - 1]), 2, "y")
    assert labels.tolist() == [0, MAX_CLASSES - 1] and classes is None


@pytest.mark.parametrize("key", ["../../escaped", "imgs/train"])
def test_npz_member_names_never_become_paths(tmp_path: Path, key: str) -> None:
    x, y = _xy()
    work = tmp_path / "deep" / "a"
    work.mkdir(parents=True)
    np.savez_compressed(tmp_path / "s.npz", **{key: x, "y": y})
    cwd = os.getcwd()
    os.chdir(work)
    try:
        res = _export(f"npz:{tmp_path / 's.npz'}", "out", "--x-key", key)
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    assert manifest(work / "out")["splits"]["train"]["counts"]["written"] == len(x)
    assert sorted(p.name for p in tmp_path.rglob("*.npy")) == []
    assert not [p for p in (work / "out").iterdir() if p.name.startswith(".")], "the spool is removed"


def _flip_bytes_in_member(path: Path, member: str) -> None:
    import zipfile

    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    data = bytearray(path.read_bytes())
    at = info.header_offset + 30 + len(info.filename) + 200
    data[at] ^= 0xFF
    data[at + 1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("save", "member"), [(np.savez_compressed, "x.npy"), (np.savez, "y.npy"),
                                              (np.savez_compressed, "y.npy")])
def test_a_corrupt_npz_is_a_usage_error(tmp_path: Path, save: Any, member: str) -> None:
    x, y = _xy(60)
    path = tmp_path / "c.npz"
    save(path, x=x, y=np.repeat(y, 20)[:60].astype(np.int64))
    _flip_bytes_in_member(path, member)
    res = _export(f"npz:{path}", str(tmp_path / "out"))
    assert res.exit_code == 2, res.output
    assert "c.npz" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_a_truncated_fortran_npy_is_refused_before_it_is_copied(tmp_path: Path) -> None:
    x, y = _xy()
    np.save(tmp_path / "xf.npy", np.asfortranarray(x))
    np.save(tmp_path / "y.npy", y)
    data = (tmp_path / "xf.npy").read_bytes()
    (tmp_path / "xf.npy").write_bytes(data[:-20])
    res = _export(f"npy:{tmp_path / 'xf.npy'},{tmp_path / 'y.npy'}", str(tmp_path / "out"))
    assert res.exit_code == 2 and "is truncated" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_bytes_class_names_in_an_npz_are_text(tmp_path: Path) -> None:
    x, y = _xy()
    np.savez(tmp_path / "s.npz", x=x, y=y, class_names=np.array([b"cat", b"dog", b"emu"]))
    assert list_arrays(f"npz:{tmp_path / 's.npz'}").class_names == ["cat", "dog", "emu"]
    np.savez(tmp_path / "t.npz", x=x, y=y, class_names=np.array(["cat", "dog"]))
    with pytest.raises(UsageError, match="the npz's class_names array has 2 names"):
        list_arrays(f"npz:{tmp_path / 't.npz'}")


def test_keys_and_labels_that_would_be_ignored_are_refused(tmp_path: Path) -> None:
    x, y = _xy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    npy = f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}"
    res = _export(npy, str(tmp_path / "out"), "--x-key", "images")
    assert res.exit_code == 2 and "--x-key apply to npz: sources only" in res.output
    res = _export(npy, str(tmp_path / "out"), "--labels", str(tmp_path / "y.npy"))
    assert res.exit_code == 2 and "both name the labels" in res.output
    with pytest.raises(UsageError, match="--y-key apply to npz: sources only"):
        augexport.export_arrays(x, y, tmp_path / "out", y_key="labels", workers=1)
    assert not (tmp_path / "out").exists()


def test_uint8_rows_record_a_scale_of_one_whatever_the_value_range(tmp_path: Path) -> None:
    x, y = _xy()
    listing = list_arrays("memory:", ArrayOptions(x=x, y=y, value_range="0,1"), spool_dir=tmp_path)
    assert "value_scale=1 " in listing.location + " " and listing.items[0].pixels.scale == 1.0
    listing.release()


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest", "bicubic", "area", "lanczos3"])
def test_pad_mode_keeps_a_side_that_fits_to_zero_pixels(interpolation: str) -> None:
    image = np.full((8, 200, 3), 200, np.uint8)
    out = keras_resize(image, (4, 4), ResizeMode(interpolation=interpolation, pad_to_aspect_ratio=True))
    assert out.shape == (4, 4, 3)
    assert out.max() > 0, "the one-pixel row holds the image, not padding only"


def test_a_damaged_labels_csv_fails_load_arrays_as_a_verify_error(tmp_path: Path) -> None:
    x, y = _xy()
    augexport.export_arrays(x, y, tmp_path / "out", fmt="images", encoding="png", workers=1)
    labels = next((tmp_path / "out").rglob("labels.csv"))
    labels.write_text(labels.read_text().replace("file,label", "name,label", 1))
    with pytest.raises(VerifyFailed, match="not an augexport labels file"):
        augexport.load_arrays(tmp_path / "out", "train")


def _npy_bytes(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def test_an_npz_member_cut_short_is_refused_not_filled_from_the_next_member(tmp_path: Path) -> None:
    """A stored member whose header promises more rows than it holds: the missing rows were read
    from the zip entries after it (a `PK\\x03\\x04` header as pixels), exit 0."""
    import zipfile

    x, y = _xy()
    with zipfile.ZipFile(tmp_path / "cut.npz", "w") as z:  # stored, as np.savez writes
        z.writestr("x.npy", _npy_bytes(x)[:-3 * 80])
        z.writestr("y.npy", _npy_bytes(y))
        z.writestr("pad.npy", _npy_bytes(np.arange(1000)))
    res = _export(f"npz:{tmp_path / 'cut.npz'}", str(tmp_path / "out"))
    assert res.exit_code == 2 and "[x] is truncated" in res.output and "the zip member holds 240" in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_unreadable_zips_and_empty_label_files_are_usage_errors(tmp_path: Path) -> None:
    """An encrypted member (RuntimeError), Deflate64 (NotImplementedError) and an empty labels .npy
    (EOFError, shown by click as a bare 'Aborted!') were exit 1."""
    import zipfile

    x, y = _xy()
    np.savez(tmp_path / "ok.npz", x=x, y=y)
    raw = bytearray((tmp_path / "ok.npz").read_bytes())
    for name, patch in (("enc.npz", "flag"), ("d64.npz", "method")):
        data = bytearray(raw)
        with zipfile.ZipFile(tmp_path / "ok.npz") as z:
            infos = z.infolist()
        central = data.rfind(b"PK\x01\x02", 0)  # patch every local and central header alike
        for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
            at = data.find(sig)
            while at != -1:
                if patch == "flag":
                    data[at + flag_at] |= 1
                else:
                    data[at + method_at:at + method_at + 2] = (9).to_bytes(2, "little")
                at = data.find(sig, at + 4)
        assert infos and central > 0
        (tmp_path / name).write_bytes(bytes(data))
        res = _export(f"npz:{tmp_path / name}", str(tmp_path / f"out-{name}"))
        assert res.exit_code == 2 and f"npz:{tmp_path / name}" in res.output, (name, res.output)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "empty.npy").write_bytes(b"")
    res = _export(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'empty.npy'}", str(tmp_path / "out"))
    assert res.exit_code == 2 and "labels" in res.output and "not a readable .npy array" in res.output, res.output
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("out")]


def test_class_names_that_would_break_the_output_are_refused(tmp_path: Path) -> None:
    """A set (its order changes between runs), a line break (label.labels.txt holds a name per
    line), two names that make one image folder, and ragged labels."""
    x, y = _xy()
    out = tmp_path / "out"
    for names, needle in (({"a", "b", "c"}, "class_names set is not accepted"),
                          (5, "class_names int is not accepted"),
                          (["a\nb", "c", "d"], "has a line break")):
        with pytest.raises(UsageError, match=needle):
            augexport.export_arrays(x, y, out, class_names=names)
    with pytest.raises(UsageError, match="classes 'a b' and 'a_b' would share the image folder 'a_b'"):
        augexport.export_arrays(x, y, out, class_names=["a b", "a_b", "c"], fmt="both")
    augexport.export_arrays(x, y, tmp_path / "shards", class_names=["a b", "a_b", "c"])  # no image folders: fine
    augexport.export_arrays(x, y, tmp_path / "keys", class_names={"x": 0, "y": 1, "z": 2}.keys())  # ordered: fine
    assert manifest(tmp_path / "keys")["class_names"] == ["x", "y", "z"]
    with pytest.raises(UsageError, match="y is not accepted"):
        augexport.export_arrays(x, [[0], [1, 2], [0], [1], [2], [0]], out)
    assert not out.exists()


def test_max_pixels_holds_for_array_rows(tmp_path: Path) -> None:
    x, y = _xy()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    res = _export(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}", str(tmp_path / "out"), "--max-pixels", "79")
    assert res.exit_code == 2 and "rows are 8x10 (HxW) = 80 pixels, above --max-pixels 79" in res.output, res.output
    assert not (tmp_path / "out").exists()
    res = _export(f"npy:{tmp_path / 'x.npy'},{tmp_path / 'y.npy'}", str(tmp_path / "out"), "--max-pixels", "80")
    assert res.exit_code == 0, res.output


def test_load_arrays_names_the_damaged_shard_or_file(tmp_path: Path) -> None:
    x, y = _xy()
    augexport.export_arrays(x, y, tmp_path / "out", workers=1)
    shard = next((tmp_path / "out").glob("*.tfrecord-*"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(VerifyFailed, match=f"shard {shard.name} cannot be read: .*inspect --verify"):
        augexport.load_arrays(tmp_path / "out")
    augexport.export_arrays(x, y, tmp_path / "img", workers=1, fmt="images", encoding="png")
    a, b = sorted((tmp_path / "img").glob("images/train/*/*.png"))[:2]
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)  # swapped: every file decodes, the pixels would be another row's
    with pytest.raises(VerifyFailed, match="is not the file its labels.csv row describes"):
        augexport.load_arrays(tmp_path / "img")
    with pytest.raises(UsageError, match="OUT must be a path"):
        augexport.load_arrays(5)  # type: ignore[arg-type]


def test_a_masked_array_is_refused_and_a_comma_in_xs_path_works_with_labels(tmp_path: Path) -> None:
    """np.ma's mask was dropped silently (the values under it exported); `npy:d,ir/x.npy --labels
    y.npy` was refused as naming the labels twice."""
    x, y = _xy()
    with pytest.raises(UsageError, match="x is a masked array"):
        augexport.export_arrays(np.ma.masked_less(x, 10), y, tmp_path / "out")
    with pytest.raises(UsageError, match="y is a masked array"):
        augexport.export_arrays(x, np.ma.masked_equal(y, 1), tmp_path / "out")
    (tmp_path / "d,ir").mkdir()
    np.save(tmp_path / "d,ir" / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    res = _export(f"npy:{tmp_path / 'd,ir' / 'x.npy'}", str(tmp_path / "out"), "--labels", str(tmp_path / "y.npy"),
                  "--encoding", "png", "--no-shuffle")
    assert res.exit_code == 0, res.output
    got, _, labels = augexport.load_arrays(tmp_path / "out")
    assert np.array_equal(got[..., 0], x) and np.array_equal(labels, y) and manifest(tmp_path / "out")["name"] == "x"


def test_load_arrays_of_a_split_with_no_record_keeps_the_image_size(tmp_path: Path) -> None:
    """Every input skipped: x was (0, 0, 0, C), which stacks with no other array."""
    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    (src / "0.png").write_bytes(b"")
    from augexport import api

    api.export(str(tmp_path / "src"), tmp_path / "out", workers=1, image_size=24)
    x, soft, labels = augexport.load_arrays(tmp_path / "out")
    assert x.shape == (0, 24, 24, 3) and soft.shape == (0, 1) and labels.shape == (0,)
