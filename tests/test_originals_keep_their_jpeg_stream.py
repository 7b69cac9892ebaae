"""An unchanged original of a plain JPEG stores the source's own stream (metadata dropped) when a
re-encode at --quality could not be finer; it decodes to exactly the source's pixels, through
augexport's, PIL's and TensorFlow's decoders. Everything else is re-encoded as before."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from augexport import api, codec, jpeg_stream
from augexport.records import decode_example, read_tfrecords
from tests.conftest import smooth_image


def _photo(h: int = 48, w: int = 64) -> np.ndarray:
    return smooth_image(3, h, w)


def _pil_jpeg(img: np.ndarray, quality: int = 90, **save: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, **save)
    return buf.getvalue()


def _dqt(data: bytes) -> list[tuple[int, ...]]:
    """The DQT tables of a stream, in stream order."""
    tables, pos = [], 2
    while data[pos + 1] != 0xDA:
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == 0xDB:
            body = data[pos + 4 : pos + 2 + length]
            tables += [tuple(body[k + 1 : k + 65]) for k in range(0, len(body), 65)]
        pos += 2 + length
    return tables


@pytest.mark.parametrize("quality", [1, 10, 49, 50, 75, 90, 95, 100])
def test_quality_tables_are_libjpegs_own(quality: int) -> None:
    """The oracle: the tables libjpeg-turbo writes at `quality` (simplejpeg, PIL)."""
    img = _photo()
    want = list(jpeg_stream.quality_tables(quality))
    assert _dqt(simplejpeg.encode_jpeg(img, quality=quality, colorsubsampling="420")) == want
    assert _dqt(_pil_jpeg(img, quality=quality)) == want


def _exif_gps() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010F] = "CameraMaker"
    return exif.tobytes()


@pytest.mark.parametrize("save", [{}, {"progressive": True}, {"exif": _exif_gps(), "comment": b"secret"},
                                  {"icc_profile": b"\0" * 200}, {"restart_marker_blocks": 1}])
def test_a_kept_stream_decodes_to_the_sources_pixels_without_its_metadata(save: dict[str, object]) -> None:
    data = _pil_jpeg(_photo(), **save) + b"trailing bytes after the end of the image"
    pixels, kept = codec.Decoder().keeping(data, 95)
    assert kept is not None
    assert np.array_equal(simplejpeg.decode_jpeg(kept), pixels)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(kept)).convert("RGB")), codec.decode_pil(data))
    for gone in (b"Exif", b"CameraMaker", b"secret", b"ICC_PROFILE", b"trailing"):
        assert gone not in kept
    assert kept.endswith(b"\xff\xd9") and len(kept) <= len(data)


def test_kept_streams_decode_the_same_in_tensorflow() -> None:
    tf = pytest.importorskip("tensorflow")
    data = _pil_jpeg(_photo(), progressive=True, exif=_exif_gps())
    pixels, kept = codec.Decoder().keeping(data, 95)
    assert kept is not None
    accurate = tf.io.decode_jpeg(kept, channels=3, dct_method="INTEGER_ACCURATE").numpy()
    assert np.array_equal(accurate, pixels)
    assert np.array_equal(tf.io.decode_jpeg(kept, channels=3).numpy(), tf.io.decode_jpeg(data, channels=3).numpy())


@pytest.mark.parametrize(("why", "data", "decoder", "quality"), [
    ("source finer than --quality", _pil_jpeg(_photo(), quality=98), codec.Decoder(), 95),
    ("4:4:4 chroma, finer than the re-encode's 4:2:0", _pil_jpeg(_photo(), subsampling=0), codec.Decoder(), 95),
    ("4:2:2 chroma", _pil_jpeg(_photo(), subsampling=1), codec.Decoder(), 95),
    ("resized", _pil_jpeg(_photo()), codec.Decoder(size=(24, 32)), 95),
    ("grey source, RGB wanted", _pil_jpeg(_photo()[:, :, 0]), codec.Decoder(channels=3), 95),
    ("colour source, grey wanted", _pil_jpeg(_photo()), codec.Decoder(channels=1), 95),
    ("EXIF rotation", None, codec.Decoder(), 95),
    ("truncated", _pil_jpeg(_photo())[:-200], codec.Decoder(), 95),
])
def test_everything_else_is_re_encoded(why: str, data: bytes | None, decoder: codec.Decoder, quality: int) -> None:
    if data is None:
        exif = Image.Exif()
        exif[0x0112] = 6
        data = _pil_jpeg(_photo(), exif=exif.tobytes())
    try:
        _, kept = decoder.keeping(data, quality)
    except codec.DecodeError:
        return  # the truncated file is not an image at all
    assert kept is None, why


def test_grey_jpeg_kept_for_one_channel_exports() -> None:
    data = _pil_jpeg(_photo()[:, :, 0])
    pixels, kept = codec.Decoder(channels=1).keeping(data, 95)
    assert kept is not None and np.array_equal(simplejpeg.decode_jpeg(kept, colorspace="GRAY"), pixels)


def _records(out: Path) -> list[dict]:
    recs = []
    for shard in sorted(out.glob("*.tfrecord-*")):
        with open(shard, "rb") as f:
            recs += [decode_example(r) for r in read_tfrecords(f)]
    return recs


def test_an_export_stores_originals_as_their_streams_and_re_encodes_augmented_copies(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    sources = {f"img{i}": _pil_jpeg(smooth_image(i, 40, 56), exif=_exif_gps()) for i in range(3)}
    for name, data in sources.items():
        (src / "a" / f"{name}.jpg").write_bytes(data)
    api.export(src, tmp_path / "out", copies=1, config=None, keras={"rotation_range": 20})
    recs = _records(tmp_path / "out")
    assert len(recs) == 6
    for rec in recs:
        image = rec["image"][0]
        name = rec["source_id"][0].decode().split("/")[-1].removesuffix(".jpg")
        if rec["copy"] == [0]:
            assert image == jpeg_stream.keepable(sources[name], 3, 95, (40, 56))
            assert b"CameraMaker" not in image
        else:
            assert _dqt(image) == list(jpeg_stream.quality_tables(95))  # re-encoded at --quality


def test_streams_the_walk_does_not_expect_are_re_encoded_and_thumbnails_dropped() -> None:
    data = _pil_jpeg(_photo())
    assert jpeg_stream.keepable(b"\xff\xd8\xff\xd9", 3, 95, (48, 64)) is None  # no frame, no scan
    sof = data.index(b"\xff\xc0")
    arithmetic = data[:sof + 1] + b"\xc9" + data[sof + 2:]
    assert jpeg_stream.keepable(arithmetic, 3, 95, (48, 64)) is None
    assert jpeg_stream.keepable(data, 3, 95, (48, 63)) is None  # not the decoded size
    jfxx = b"\xff\xe0\x00\x0aJFXX\x00\x13\x00\x00"  # a JFIF extension segment (thumbnails)
    kept = jpeg_stream.keepable(data[:2] + jfxx + data[2:], 3, 95, (48, 64))
    assert kept == jpeg_stream.keepable(data, 3, 95, (48, 64)) and b"JFXX" not in kept


def test_jfif_thumbnails_and_adobe_payloads_are_cut_to_their_headers() -> None:
    data = _pil_jpeg(_photo())
    assert data[2:4] == b"\xff\xe0" and data[20:22] == b"\xff\xdb"  # PIL's 16-byte JFIF APP0, then tables
    thumb = b"\xff\xe0\x00\x16" + data[6:18] + b"\x02\x01" + b"\x7f" * 6  # a 2x1 RGB thumbnail
    adobe = b"\xff\xee\x00\x16Adobe\x00\x64\x00\x00\x00\x00\x01" + b"PAYLOAD!"
    crafted = data[:2] + thumb + adobe + data[20:]
    kept = jpeg_stream.keepable(crafted, 3, 95, (48, 64))
    assert kept is not None and b"\x7f" * 6 not in kept and b"PAYLOAD" not in kept
    assert kept[2:20] == b"\xff\xe0\x00\x10" + data[6:18] + b"\x00\x00" and b"\xff\xee\x00\x0eAdobe" in kept
    assert np.array_equal(simplejpeg.decode_jpeg(kept), simplejpeg.decode_jpeg(crafted))
