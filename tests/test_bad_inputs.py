"""Every awkward input is converted correctly or skipped with a reason; a run never crashes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augexport import codec
from augexport.cli import main
from augexport.errors import DecodeError
from tests.conftest import smooth_image
from tests.helpers import manifest, read_records

RGB = smooth_image(7, 20, 30)


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kw)
    return buf.getvalue()


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def test_rgba_and_la_drop_alpha_like_tf() -> None:
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(codec.decode(_png(Image.fromarray(rgba, "RGBA"))), RGB)
    grey = RGB[:, :, 0]
    la = Image.fromarray(np.dstack([grey, np.zeros_like(grey)]), "LA")
    np.testing.assert_array_equal(codec.decode(_png(la)), np.repeat(grey[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(codec.decode(_png(la), channels=1)[:, :, 0], grey)


def test_palette_with_transparency() -> None:
    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.info["transparency"] = 0
    data = _png(pal, transparency=0)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGBA"))[:, :, :3]
    np.testing.assert_array_equal(codec.decode(data), expected)


def test_16bit_grey_is_scaled_not_clipped() -> None:
    """The high byte, as tf.io.decode_png(dtype=uint8) and PIL's 16-bit RGB path give (it was
    rint(x * 255 / 65535), one level off TF on a quarter of the pixels); PIL's own I;16 -> L clips."""
    arr16 = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 100 + 7).astype(np.uint16)
    img = Image.fromarray(arr16)
    assert img.mode == "I;16"
    data = _png(img)
    out = codec.decode(data)
    np.testing.assert_array_equal(out[:, :, 0], (arr16 >> 8).astype(np.uint8))
    assert out[-1, -1, 0] > 200  # clipping would have made everything 255 after the first row
    rgb16 = np.stack([arr16, arr16 // 2, arr16 // 3], axis=-1)
    import cv2

    ok, enc = cv2.imencode(".png", rgb16[:, :, ::-1])
    assert ok
    np.testing.assert_array_equal(codec.decode(enc.tobytes()), (rgb16 >> 8).astype(np.uint8))  # the same rule


def test_cmyk_jpeg_converts_to_rgb() -> None:
    cmyk = Image.fromarray(RGB).convert("CMYK")
    out = codec.decode(_jpeg(cmyk))
    assert out.shape == (20, 30, 3)
    assert np.abs(out.astype(int) - RGB.astype(int)).mean() < 12


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    img = Image.fromarray(np.pad(RGB, ((0, 0), (0, 10), (0, 0))))  # 20x40, asymmetric
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = codec.decode(_png(img, exif=exif.tobytes()))
    expected = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
                5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
                7: lambda a: np.rot90(a, 2).transpose(1, 0, 2), 8: lambda a: np.rot90(a, 1)}[orientation](np.asarray(img))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"this is text, not an image", "not a readable image"),
    (None, "corrupt or truncated"),
])
def test_unreadable_bytes_raise_decode_error(data: bytes | None, reason: str) -> None:
    if data is None:
        data = _jpeg(Image.fromarray(RGB))[:200]
    with pytest.raises(DecodeError, match=reason):
        codec.decode(data)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    big = Image.new("1", (12000, 8000))
    data = _png(big)
    with pytest.raises(DecodeError, match="exceeds the limit"):
        codec.decode(data, max_pixels=50_000_000)


def _bad_folder(root: Path) -> Path:
    (root / "ok").mkdir(parents=True)
    (root / "bad").mkdir()
    (root / "empty_class").mkdir()
    for i in range(3):
        Image.fromarray(smooth_image(i, 16, 20)).save(root / "ok" / f"{i}.png")
    (root / "bad" / "zero.jpg").write_bytes(b"")
    (root / "bad" / "text.png").write_text("not an image")
    (root / "bad" / "trunc.jpg").write_bytes(_jpeg(Image.fromarray(RGB))[:150])
    Image.fromarray(smooth_image(9, 16, 20)).save(root / "bad" / "fine.png")
    (root / "ok" / "notes.txt").write_text("ignored: not an image extension")
    return root


def test_bad_files_are_skipped_into_errors_file(tmp_path: Path) -> None:
    src = _bad_folder(tmp_path / "src")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "7 images in, 4 records out, 3 skipped" in res.output
    errors = [json.loads(line) for line in (out / "errors-train.jsonl").read_text().splitlines()]
    assert {e["source_id"]: e["error"].split(":")[0] for e in errors} == {
        "bad/zero.jpg": "empty file (0 bytes)", "bad/text.png": "not a readable image",
        "bad/trunc.jpg": "corrupt or truncated image"}
    m = manifest(out)
    assert m["class_names"] == ["bad", "empty_class", "ok"]
    assert m["splits"]["train"]["counts"] == {"source": 7, "written": 4, "skipped": 3, "mixed": 0, "ignored": 1}
    assert m["splits"]["train"]["ignored"] == [{"path": "ok/notes.txt", "why": "not an image file name"}]
    assert len(read_records(out)) == 4


def test_on_error_fail_exits_1_and_finalizes_nothing(tmp_path: Path) -> None:
    src = _bad_folder(tmp_path / "src")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--workers", "1", "--on-error", "fail", "--quiet"])
    assert res.exit_code == 1
    assert "--on-error fail" in res.output
    assert not out.exists()  # the run created OUT, wrote nothing final, and removed it again
