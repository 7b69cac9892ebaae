"""An unchanged original stored as its source's own JPEG stream instead of a re-encode.

Re-encoding a decoded JPEG at `--quality` costs an encode (about half of a JPEG -> JPEG export's
codec time) and loses detail a second time. Where the re-encode could be neither more faithful
nor smaller than the source, an original copy (no stage, no mixing) stores the source's stream:
its pixels decode exactly as the source does. That is the case when

- the source is a plain JPEG that the fast decoder reads as it is: baseline, extended or
  progressive Huffman, 8-bit, 4:2:0 YCbCr (the re-encode's own subsampling) with 3 channels
  wanted, or greyscale with 1; EXIF orientation 1 (or none); decoded at its own size (no
  `image_size` resize);
- every quantisation table the frame uses is at least as coarse, entry by entry, as the table
  libjpeg builds for `--quality` (its luminance table for the first component, its chrominance
  table for the others): re-encoding a q75 photo at q95 gives a bigger file of a worse picture.
  A source finer than `--quality` (a q100 photo exported at q75) is re-encoded, so --quality
  still shrinks such data sets.

The stored stream keeps what decoding needs (the JFIF and Adobe headers, tables, frame, scans)
and drops the rest: EXIF (GPS positions, camera serials), XMP, IPTC, ICC profiles, comments and
any bytes after the end of the image (e.g. a phone's embedded preview). A re-encode never carried
them either. Any structure this walk does not expect means "re-encode", never an error.
"""

from __future__ import annotations

import operator
import re
import struct
from functools import lru_cache

# libjpeg's Annex K tables (jcparam.c), natural order; jpeg_natural_order maps stream order to it
_STD_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
             14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)
_STD_CHROMA = (17, 18, 24, 47, *[99] * 4, 18, 21, 26, 66, *[99] * 4, 24, 26, 56, *[99] * 5, 47, 66, *[99] * 38)
_NATURAL = (0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6,
            7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31,
            39, 46, 53, 60, 61, 54, 47, 55, 62, 63)

_FRAMES = {0xC0, 0xC1, 0xC2}  # baseline, extended, progressive; Huffman coding, what every decoder reads
_TABLES = {0xC4, 0xDB, 0xDD}  # DHT, DQT, DRI: kept as they are
_HEADERS = {0xE0, 0xEE}  # APP0 (JFIF), APP14 (Adobe colour transform): kept as their headers
_DROP = {*range(0xE1, 0xEE), 0xEF, 0xFE}  # APP1-13, APP15, COM: metadata
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # in scan data: not a stuffed byte, not RSTn


@lru_cache(maxsize=8)
def quality_tables(quality: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """libjpeg's luminance and chrominance tables for `quality` (jpeg_set_quality, baseline), in
    stream (zigzag) order as a DQT segment carries them."""
    quality = min(max(quality, 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality

    def scaled(base: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(min(max((base[k] * scale + 50) // 100, 1), 255) for k in _NATURAL)

    return scaled(_STD_LUMA), scaled(_STD_CHROMA)


def exif_orientation(data: bytes) -> int:
    """EXIF orientation tag (1..8) of a JPEG, 1 when absent; -1 when the markers cannot be walked."""
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return -1
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan / end of image: no more metadata
            return 1
        length = (data[pos + 2] << 8) | data[pos + 3]
        if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\x00\x00":
            return _tiff_orientation(data[pos + 10 : pos + 2 + length])
        pos += 2 + length
    return -1


def _tiff_orientation(tiff: bytes) -> int:
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (ifd,) = struct.unpack_from(order + "I", tiff, 4)
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for k in range(count):
            tag, kind, _, value = struct.unpack_from(order + "HHI2s", tiff, ifd + 2 + 12 * k)
            if tag == 0x0112:
                return struct.unpack(order + "H", value)[0] if kind == 3 else -1
    except (KeyError, struct.error):
        return -1
    return 1


def keepable(data: bytes, channels: int, quality: int, shape: tuple[int, ...]) -> bytes | None:
    """The stream an unchanged original of `shape` (H, W) stores instead of a re-encode at
    `quality`, or None (re-encode). The caller decoded `data` to exactly those pixels."""
    if data[:2] != b"\xff\xd8" or exif_orientation(data) != 1:
        return None
    try:
        return _walk(data, (channels, *shape[:2]), quality_tables(quality))
    except (IndexError, struct.error, ValueError):
        return None


def _walk(data: bytes, frame: tuple[int, int, int], wanted: tuple[tuple[int, ...], tuple[int, ...]]) -> bytes | None:
    """Copy the segments decoding needs; None where the stream is not one to keep."""
    out, tables, pos, framed, scanned = [b"\xff\xd8"], {}, 2, False, False
    seen: set[int] = set()  # APP0 / APP14 kept: the first of each, before the frame
    while True:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # end of image: what follows (a trailer, a preview) is dropped
            return b"".join([*out, b"\xff\xd9"]) if scanned else None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(data):
            return None
        segment = data[pos:end]
        if marker in _FRAMES:
            if framed or not _frame_ok(segment, tables, frame, wanted):
                return None
            framed = True
        elif marker == 0xDB:
            if framed or not _read_tables(segment, tables):
                return None  # tables redefined between scans: not worth the risk
        elif marker == 0xDA:
            if not framed:
                return None
            found = _NEXT_MARKER.search(data, end)
            if found is None:
                return None  # no end of image: truncated
            out.append(data[pos : found.start()])
            pos, scanned = found.start(), True
            continue
        elif marker not in _TABLES and marker not in _HEADERS and marker not in _DROP:
            return None  # SOF of another kind, DAC, DNL, hierarchical: re-encode
        if marker in _FRAMES or marker in _TABLES:
            out.append(segment)
        elif marker in _HEADERS and not framed and marker not in seen:
            header = _header_only(marker, segment)  # b"" when it is not JFIF's / Adobe's
            if header:
                out.append(header)
                seen.add(marker)
        pos = end


def _header_only(marker: int, segment: bytes) -> bytes:
    """JFIF's APP0 without its thumbnail (16 bytes), Adobe's APP14 without anything after its
    12-byte header (the colour transform flag is what decoders read); b"" for any other APP0/APP14."""
    if marker == 0xE0 and segment[4:9] == b"JFIF\x00" and len(segment) >= 18:
        return b"\xff\xe0\x00\x10" + segment[4:16] + b"\x00\x00"  # thumbnail width, height: 0
    if marker == 0xEE and segment[4:9] == b"Adobe" and len(segment) >= 16:
        return b"\xff\xee\x00\x0e" + segment[4:16]
    return b""


def _read_tables(segment: bytes, tables: dict[int, tuple[int, ...]]) -> bool:
    pos = 4
    while pos < len(segment):
        precision, slot = segment[pos] >> 4, segment[pos] & 15
        if precision != 0 or pos + 65 > len(segment):
            return False  # 16-bit tables: only 12-bit JPEGs need them
        tables[slot] = tuple(segment[pos + 1 : pos + 65])
        pos += 65
    return True


def _frame_ok(segment: bytes, tables: dict[int, tuple[int, ...]], frame: tuple[int, int, int],
              wanted: tuple[tuple[int, ...], tuple[int, ...]]) -> bool:
    """8-bit, (channels, H, W) = `frame`, every component's table at least as coarse as `wanted`."""
    precision, count = segment[4], segment[9]
    height, width = struct.unpack_from(">HH", segment, 5)
    if precision != 8 or (count, height, width) != frame or len(segment) < 10 + 3 * count:
        return False
    if count == 3 and segment[11:20:3] != b"\x22\x11\x11":
        return False  # 4:4:4 or 4:2:2: the 4:2:0 re-encode may be smaller, so keep the old behaviour
    for k in range(count):
        table = tables.get(segment[10 + 3 * k + 2])
        floor = wanted[0] if k == 0 else wanted[1]
        if table is None or not all(map(operator.ge, table, floor)):
            return False
    return True
