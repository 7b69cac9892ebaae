"""Array sources: pixels and labels as numpy arrays, the way `keras.datasets.*.load_data()` hands them out.

    augexport export npz:fashion.npz OUT [--x-key x --y-key y] [--class-names a,b,...]
    augexport export npy:x_train.npy,y_train.npy OUT        (or npy:x_train.npy --labels y_train.npy)
    augexport.export_arrays(x_train, y_train, "OUT", copies=10)

Pixels: N×H×W (grey), N×H×W×1 or N×H×W×3. uint8 is taken as it is; other integers must lie in
0..255; floats in [0, 1] are scaled by 255, floats in [0, 255] taken as they are (then rounded half
to even). Which one is `value_range`: `auto` (default) scans the array once in the main process in
bounded chunks (uint8 needs no scan): max <= 1 means [0, 1]; NaN, negatives or values > 255 are a
usage error. `0,1` or `0,255` skip the scan (values outside are clipped, NaN becomes 0). Labels: N or N×1 integer
class indices, or N×C one-hot rows. Class names: `class_names`, else the npz key `class_names`, else
"0".."C-1". The default `--channels` is the array's own (1 for N×H×W): see `array_channels`.

Streaming. The main process reads the header of X (and all of Y, which is small); every item is the
byte range of one row of a C-ordered .npy, which a worker reads with one positioned read
(`SourceItem.read`) and takes as pixels (`RawPixels`). Nothing holds the whole array, and no worker
maps it (mapped pages count in a process's RSS once touched; reads go through the page cache, which
does not). An npz member stored uncompressed (`np.savez`) is read in place inside the zip; a
compressed one (`np.savez_compressed`), a Fortran-ordered .npy and in-memory arrays are first copied,
C-ordered and in bounded chunks, into a spool file inside OUT (`naming.ARRAY_SPOOL_PREFIX`, removed
when the run ends).

source_id is the row index in plain decimal ("0" .. "59999"): stable, independent of N (no padding
that would change with the array's length), and `int(source_id)` is the row.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import weakref
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..errors import UsageError
from ..fs import is_url
from ..naming import ARRAY_SPOOL_PREFIX
from . import RawPixels, SourceListing
from .array_items import ArrayItems

SCHEMES = ("npz:", "npy:")
MEMORY = "memory:"  # in-memory arrays (augexport.export_arrays); not a CLI source
VALUE_RANGES = ("auto", "0,1", "0,255")
CHUNK_BYTES = 16 << 20  # the most of X any scan or copy holds at once
# Every record carries one float per class (soft_label) and the manifest one name per class, so a
# stray huge label would make both enormous: refuse more classes than any public data set has.
MAX_CLASSES = 100_000
# what zipfile and np.load raise for a damaged or unusual zip: encrypted members are RuntimeError,
# an unsupported compression method (Deflate64) NotImplementedError
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, RuntimeError, NotImplementedError)


def is_array_source(source: object) -> bool:
    return str(source).startswith((*SCHEMES, MEMORY))


@dataclass
class ArrayOptions:
    """What an array source takes besides its path (the CLI's --x-key/--y-key/--class-names/--value-range)."""

    x_key: str = "x"
    y_key: str = "y"
    class_names: Sequence[str] | str | None = None
    value_range: str = "auto"
    x: Any = None  # in-memory arrays (MEMORY source)
    y: Any = None
    labels: str | None = None  # npy:X.npy --labels Y.npy


@dataclass
class Stored:
    """Where X's rows are: a C-ordered array of `shape`/`dtype` starting at byte `offset` of `path`."""

    path: str
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    end: int | None = None  # where the data must end (an npz member's last byte); None: the file's end


# -- reading .npy headers ----------------------------------------------------------------------
def _read_header(f: BinaryIO, what: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise ValueError(f"npy format version {version} is not supported (1.0 and 2.0 are)")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UsageError(f"{what} is not a readable .npy array: {exc}") from None
    if dtype.hasobject:
        raise UsageError(f"{what} holds Python objects (dtype {dtype}); augexport reads only numeric arrays")
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _npy_header(path: str, what: str) -> tuple[tuple[int, ...], bool, np.dtype[Any], int]:
    try:
        with open(path, "rb") as f:
            shape, fortran, dtype = _read_header(f, what)
            return shape, fortran, dtype, f.tell()
    except OSError as exc:
        raise UsageError(f"{what}: cannot read: {exc.strerror or exc}") from None


def _member(zf: zipfile.ZipFile, key: str, flag: str, path: str) -> zipfile.ZipInfo:
    names = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
    if key not in names:
        raise UsageError(f"{flag} {key!r}: {path} has no such array; accepted: {', '.join(sorted(names)) or 'none'}")
    return zf.getinfo(names[key])


def _stored_member_offset(path: str, info: zipfile.ZipInfo) -> int:
    """Byte offset of an uncompressed zip member's data: after its local header (30 bytes + name + extra)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise UsageError(f"{path}: member {info.filename} has no valid zip header")
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


def _open_zip(path: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UsageError(f"SOURCE npz:{path} is not a readable .npz file: {exc}") from None


# -- where X is ------------------------------------------------------------------------------
def _locate_npz(path: str, key: str, spool: Any) -> Stored:
    """X inside an npz: read in place when stored uncompressed, else extracted once into the spool."""
    with _open_zip(path) as zf:
        info = _member(zf, key, "--x-key", path)
        what = f"npz:{path} [{key}]"
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
            start = _stored_member_offset(path, info)
            with open(path, "rb") as f:
                f.seek(start)
                shape, fortran, dtype = _read_header(f, what)
                data = f.tell()
            if not fortran:
                return Stored(path, data, shape, dtype, end=start + info.file_size)
            raise UsageError(f"{what} is stored in Fortran order; save it C-ordered (np.ascontiguousarray)")
        target = os.path.join(spool(), "npz-member.npy")  # never the member's name: it may hold '/' or '..'
        try:
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_BYTES)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
            # (a full OUT stays an OSError: exit 1)
            raise UsageError(f"{what}: the compressed member cannot be read (corrupt file?): {exc}") from None
    shape, fortran, dtype, data = _npy_header(target, what)
    if fortran:
        raise UsageError(f"{what} is stored in Fortran order; save it C-ordered (np.ascontiguousarray)")
    return Stored(target, data, shape, dtype)


def _spill(x: Any, spool: Any) -> tuple[Stored, str]:
    """Copy an array (in memory, or a memory-mapped Fortran .npy) C-ordered into the spool, in chunks
    of at most CHUNK_BYTES; returns where it is and the sha256 of its bytes."""
    target = os.path.join(spool(), "x.npy")
    dtype = x.dtype.newbyteorder("=") if x.dtype.byteorder not in ("=", "|") else x.dtype
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(x.shape)}
    rows = max(1, CHUNK_BYTES // max(1, x[:1].nbytes))
    digest = hashlib.sha256()
    with open(target, "wb") as f:
        np.lib.format.write_array_header_2_0(f, header)
        data = f.tell()
        for lo in range(0, x.shape[0], rows):
            chunk = np.ascontiguousarray(x[lo:lo + rows], dtype=dtype).tobytes()
            digest.update(chunk)
            f.write(chunk)
    return Stored(target, data, tuple(x.shape), dtype), digest.hexdigest()


def _layout(stored: Stored, what: str) -> tuple[int, int, int]:
    """(H, W, C) of one row; the accepted shapes are N×H×W, N×H×W×1 and N×H×W×3."""
    shape, dtype = stored.shape, stored.dtype
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise UsageError(f"{what} has dtype {dtype}; accepted: uint8, other integers in 0..255, or floats")
    if len(shape) == 3:
        shape = (*shape, 1)
    if len(shape) != 4 or shape[3] not in (1, 3) or min(shape[1:3], default=0) < 1:
        raise UsageError(f"{what} has shape {stored.shape}; accepted: N×H×W (grey), N×H×W×1 or N×H×W×3")
    if shape[0] < 1:
        raise UsageError(f"{what} has no rows (shape {stored.shape})")
    return shape[1], shape[2], shape[3]


def _scale(stored: Stored, value_range: str, what: str) -> float:
    """The factor pixels are multiplied by: 1, or 255 for [0, 1] data (see the module docstring)."""
    if value_range not in VALUE_RANGES:
        raise UsageError(f"--value-range {value_range!r} is not accepted; accepted: {', '.join(VALUE_RANGES)}")
    if stored.dtype == np.uint8:
        return 1.0
    if value_range != "auto":
        return 255.0 if value_range == "0,1" else 1.0
    lo, hi = _min_max(stored)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise UsageError(f"{what} contains NaN or infinite values; pixels must be finite")
    if lo < 0 or hi > 255:
        raise UsageError(f"{what} has values in [{lo:g}, {hi:g}]; accepted: [0, 1] or [0, 255] "
                         "(or pass --value-range 0,1|0,255 to clip)")
    if stored.dtype.kind in "ui":
        return 1.0
    return 255.0 if hi <= 1 else 1.0


def _min_max(stored: Stored) -> tuple[float, float]:
    """One pass over X in chunks of CHUNK_BYTES (never the whole array in memory)."""
    per = int(np.prod(stored.shape[1:])) * stored.dtype.itemsize
    total = stored.shape[0] * per
    lo, hi = np.inf, -np.inf
    with open(stored.path, "rb") as f:
        pos = 0
        while pos < total:
            want = min(total - pos, max(per, CHUNK_BYTES // per * per))
            f.seek(stored.offset + pos)
            chunk = np.frombuffer(f.read(want), dtype=stored.dtype)
            if chunk.size == 0:
                break
            if chunk.dtype.kind == "f" and not np.isfinite(chunk).all():
                return np.nan, np.nan
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
            pos += want
    return lo, hi


# -- labels and class names --------------------------------------------------------------------
def labels_from(y: Any, n: int, what: str) -> tuple[np.ndarray, int | None]:
    """Integer labels (N,) from N / N×1 class indices or N×C one-hot rows; also C for one-hot."""
    y = np.asarray(y)
    if y.dtype.hasobject or y.dtype.kind not in "buif":
        raise UsageError(f"{what} has dtype {y.dtype}; accepted: integer class indices or one-hot rows")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.shape[:1] != (n,):
        raise UsageError(f"{what} has shape {y.shape} but X has {n} rows; accepted: N, N×1 or N×C (one-hot)")
    if y.ndim == 2:
        hot = (y == 1).sum(axis=1) == 1
        zero = ((y == 0) | (y == 1)).all(axis=1)
        bad = np.flatnonzero(~(hot & zero))
        if bad.size:
            raise UsageError(f"{what} row {int(bad[0])} is {y[bad[0]].tolist()[:12]}: not one-hot; accepted: integer "
                             "class indices or one-hot rows (soft labels as input are not supported)")
        if y.shape[1] > MAX_CLASSES:
            raise UsageError(f"{what} has {y.shape[1]} one-hot columns; accepted: at most {MAX_CLASSES:,} classes")
        return np.argmax(y, axis=1).astype(np.int64), int(y.shape[1])
    if y.ndim != 1:
        raise UsageError(f"{what} has shape {y.shape}; accepted: N, N×1 or N×C (one-hot)")
    if y.dtype.kind == "f" and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise UsageError(f"{what} holds non-integer values; accepted: integer class indices or one-hot rows")
    if y.size and y.dtype.kind != "b" and y.min() < 0:
        raise UsageError(f"{what} holds a negative label ({y.min()}); accepted: class indices 0..C-1")
    if y.size and y.max() >= MAX_CLASSES:
        raise UsageError(f"{what} holds the label {y.max()}; accepted: class indices below {MAX_CLASSES:,} "
                         "(each record stores one soft-label value per class)")
    return y.astype(np.int64), None


def class_names_for(given: Sequence[str] | str | None, stored: Any, labels: np.ndarray, classes: int | None) -> list[str]:
    """--class-names (a list or `a,b,c`), else the npz's `class_names` array, else "0".."C-1"."""
    if isinstance(given, str):
        given = [n.strip() for n in given.split(",")]
    elif given is not None:
        if isinstance(given, (set, frozenset, bytes)) or not hasattr(given, "__iter__"):  # a set's order drifts
            raise UsageError(f"class_names {type(given).__name__} is not accepted; accepted: an ordered sequence "
                             "of names (a list, a tuple), or 'a,b,c' text")
        given = list(given)
    flag = "--class-names" if given is not None else "the npz's class_names array"
    names = [_name(n) for n in given] if given is not None else (
        [_name(n) for n in np.asarray(stored).reshape(-1).tolist()] if stored is not None else None)
    top = int(labels.max()) + 1 if labels.size else 0
    if names is None:
        return [str(i) for i in range(max(top, classes or 0))]
    if len(names) > MAX_CLASSES:
        raise UsageError(f"{flag} has {len(names)} names; accepted: at most {MAX_CLASSES:,} classes")
    if len(set(names)) != len(names) or any(not n for n in names):
        raise UsageError(f"{flag} {names[:10]}: names must be unique and not empty")
    if len(names) < top or (classes is not None and len(names) != classes):
        want = classes if classes is not None else f"at least {top}"
        raise UsageError(f"{flag} has {len(names)} names; the labels need {want}")
    return names


def _name(value: Any) -> str:
    """A class name as text: numpy 'S' arrays hold bytes (UTF-8 by convention), others str()."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


# -- the listing ------------------------------------------------------------------------------
def _spool_maker(spool_dir: str | os.PathLike[str] | None) -> tuple[Any, list[str]]:
    """A function creating the spool folder on first use, and a list holding it once created."""
    made: list[str] = []

    def spool() -> str:
        if not made:  # beside OUT when OUT is a folder; the system's temporary folder when it is a URL
            local = spool_dir is not None and not is_url(str(spool_dir))
            made.append(tempfile.mkdtemp(prefix=ARRAY_SPOOL_PREFIX, dir=spool_dir if local else None))
        return made[0]

    return spool, made


def _file_stamp(*paths: str) -> str:
    parts = []
    for path in paths:
        st = os.stat(path)
        parts.append(f"{os.path.abspath(path)}\x00{st.st_size}\x00{st.st_mtime_ns}")
    return "\n".join(parts)


def _open_npz_source(path: str, opts: ArrayOptions, spool: Any) -> tuple[Stored, Any, Any, str, str]:
    """(X, Y, stored class names, fingerprint seed, location) of an npz source."""
    if not os.path.isfile(path):
        raise UsageError(_missing(f"SOURCE npz:{path}", path))
    with _open_zip(path) as zf:
        _member(zf, opts.y_key, "--y-key", path)
    stored = _locate_npz(path, opts.x_key, spool)
    try:
        with np.load(path, allow_pickle=False) as npz:
            y = npz[opts.y_key]
            names = npz["class_names"] if "class_names" in npz.files and opts.class_names is None else None
    except _ZIP_ERRORS as exc:
        raise UsageError(f"SOURCE npz:{path}: cannot read {opts.y_key!r} or class_names: {exc}") from None
    return stored, y, names, _file_stamp(path), f"npz:{os.path.abspath(path)} x={opts.x_key} y={opts.y_key}"


def _missing(what: str, path: str) -> str:
    """Why array file `path` of `what` (the SOURCE text) cannot be opened: not there, or a URL."""
    where = what if what.endswith(path) else f"{what}: {path}"
    if is_url(path):
        return f"{where} is a URL; array sources are read from local files (copy it here first)"
    return f"{where} does not exist or is not a file"


def _npy_paths(spec: str, labels: str | None) -> tuple[str, str]:
    """(X path, Y path) of `npy:X.npy,Y.npy` or `npy:X.npy` with `--labels Y.npy`; both must be files."""
    parts = spec.split(",")
    if labels and (len(parts) == 1 or os.path.isfile(spec)):  # with --labels, X's own path may hold a comma
        parts = [spec, labels]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"SOURCE npy:{spec}: accepted: npy:X.npy,Y.npy (pixels, labels) or npy:X.npy --labels Y.npy")
    for p in parts:
        if not os.path.isfile(p):
            raise UsageError(_missing(f"SOURCE npy:{spec}", p))
    return parts[0], parts[1]


def _open_npy_source(spec: str, opts: ArrayOptions, spool: Any) -> tuple[Stored, Any, Any, str, str]:
    """(X, Y, None, fingerprint seed, location) of `npy:X.npy,Y.npy` (or `npy:X.npy --labels Y.npy`)."""
    xpath, ypath = _npy_paths(spec, opts.labels)
    shape, fortran, dtype, data = _npy_header(xpath, xpath)
    stored = Stored(xpath, data, shape, dtype)
    if fortran:  # rows are not contiguous: a C-ordered copy, in chunks (checked first: never copy a bad file)
        _layout(stored, xpath)
        _check_length(stored, xpath)
        stored = _spill(np.load(xpath, mmap_mode="r", allow_pickle=False), spool)[0]
    try:
        y = np.load(ypath, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:  # an empty file is EOFError
        raise UsageError(f"SOURCE npy:{spec}: labels {ypath} are not a readable .npy array: {exc}") from None
    return stored, y, None, _file_stamp(xpath, ypath), f"npy:{os.path.abspath(xpath)},{os.path.abspath(ypath)}"


def _open_memory_source(opts: ArrayOptions, spool: Any) -> tuple[Stored, Any, Any, str, str]:
    x = opts.x
    if not isinstance(x, np.ndarray):
        raise UsageError(f"x must be a numpy array, got {type(x).__name__}")
    for name, value in (("x", x), ("y", opts.y)):
        if isinstance(value, np.ma.MaskedArray):  # its mask would be dropped, the values under it exported
            raise UsageError(f"{name} is a masked array; accepted: a plain array (e.g. {name}.filled(0), or drop "
                             "the masked rows)")
    _layout(Stored("", 0, tuple(x.shape), x.dtype), "x")  # before copying anything
    stored, digest = _spill(x, spool)
    if opts.y is None:
        raise UsageError("y (the labels) is required")
    try:
        y = np.asarray(opts.y)
    except ValueError as exc:  # ragged lists
        raise UsageError(f"y is not accepted ({exc}); accepted: integer class indices or one-hot rows") from None
    return stored, y, None, digest, f"memory: x {x.dtype} {tuple(x.shape)}, y {y.dtype} {tuple(y.shape)}"


def list_arrays(source: str, options: ArrayOptions | None = None, *, name: str | None = None,
                spool_dir: str | os.PathLike[str] | None = None) -> SourceListing:
    """List an array source (see the module docstring); `spool_dir` is where a spool file may go (OUT)."""
    opts = options or ArrayOptions()
    spool, made = _spool_maker(spool_dir)
    try:
        return _listing(source, opts, name, spool, made)
    except BaseException:
        for folder in made:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _listing(source: str, opts: ArrayOptions, name: str | None, spool: Any, made: list[str]) -> SourceListing:
    if opts.labels and not source.startswith("npy:"):
        raise UsageError("--labels applies to folder sources and to npy:X.npy; an npz or in-memory source has its "
                         "labels inside (--y-key)")
    if source.startswith("npz:"):
        stored, y, names, stamp, location = _open_npz_source(source[4:], opts, spool)
        default_name = os.path.splitext(os.path.basename(source[4:]))[0]
        what, y_what = (f"npz:{source[4:]} [{key}]" for key in (opts.x_key, opts.y_key))
    elif source.startswith("npy:"):
        stored, y, names, stamp, location = _open_npy_source(source[4:], opts, spool)
        xpath, ypath = _npy_paths(source[4:], opts.labels)
        default_name = os.path.splitext(os.path.basename(xpath))[0]
        what = f"pixels {xpath}"
        y_what = f"--labels {ypath}" if opts.labels else f"labels {ypath}"
    else:
        stored, y, names, stamp, location = _open_memory_source(opts, spool)
        default_name, what, y_what = "arrays", "x", "y"
    layout = _layout(stored, what)
    _check_length(stored, what)
    pixels = RawPixels(layout, stored.dtype.str, _scale(stored, opts.value_range, what))
    labels, classes = labels_from(y, stored.shape[0], y_what)
    class_names = class_names_for(opts.class_names, names, labels, classes)
    if labels.size and labels.max() >= len(class_names):
        raise UsageError(f"label {int(labels.max())} has no class name ({len(class_names)} given)")
    row = int(np.prod(layout)) * stored.dtype.itemsize
    items = ArrayItems(labels, stored.path, stored.offset, row, pixels)
    digest = hashlib.sha256(f"{stamp}\x00{pixels}\x00{class_names}\n".encode("utf-8", "surrogateescape"))
    digest.update(labels.tobytes())
    listing = SourceListing("arrays", f"{location} value_scale={pixels.scale:g}", name or default_name, class_names,
                            items, digest.hexdigest(), [], spool=made[0] if made else None)
    if made:
        listing.cleanup = weakref.finalize(listing, shutil.rmtree, made[0], True)
    return listing


def _check_length(stored: Stored, what: str) -> None:
    """The data the header promises is there: in the file, or inside its npz member (whose bytes are
    followed by the next member's, which must never be read as pixels)."""
    need = stored.offset + int(np.prod(stored.shape)) * stored.dtype.itemsize
    have = os.path.getsize(stored.path) if stored.end is None else min(stored.end, os.path.getsize(stored.path))
    if have < need:
        where = "the file" if stored.end is None else "the zip member"
        raise UsageError(f"{what} is truncated: its header promises {need - stored.offset} bytes of pixels, "
                         f"{where} holds {max(0, have - stored.offset)}")


def array_channels(source: str, options: ArrayOptions | None = None) -> int:
    """The channel count an array source has (1 for N×H×W and N×H×W×1, else 3), read from headers
    only: the default `--channels` of an array export."""
    opts = options or ArrayOptions()
    if source.startswith("npz:"):
        path = source[4:]
        if not os.path.isfile(path):
            raise UsageError(_missing(f"SOURCE npz:{path}", path))
        what = f"npz:{path} [{opts.x_key}]"
        try:
            with _open_zip(path) as zf, zf.open(_member(zf, opts.x_key, "--x-key", path)) as f:
                shape = _read_header(f, what)[0]  # type: ignore[arg-type]
        except _ZIP_ERRORS as exc:
            raise UsageError(f"{what}: cannot be read (corrupt file?): {exc}") from None
    elif source.startswith("npy:"):
        xpath = _npy_paths(source[4:], opts.labels)[0]
        shape = _npy_header(xpath, xpath)[0]
    else:
        shape = tuple(getattr(opts.x, "shape", ()))
    return 1 if len(shape) == 3 or (len(shape) == 4 and shape[3] == 1) else 3
