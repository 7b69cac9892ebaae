"""What the filesystem can hand over: loops of symbolic links, FIFOs planted in OUT, file names with
carriage returns, images past a codec's limits and class folder names TFDS cannot hold. Each is an
`Error:` line with exit 2, or one image skipped, never a traceback, a hang or a broken output."""

from __future__ import annotations

import csv
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from augexport import codec
from augexport.cli import main
from augexport.errors import DecodeError
from augexport.naming import LOCK
from tests.conftest import make_class_folder
from tests.helpers import read_records

RUNNER = CliRunner()


def _cli(*args: str) -> object:
    return RUNNER.invoke(main, [*args])


def test_loops_of_symbolic_links_are_named_not_tracebacks(tmp_path: Path) -> None:
    """Path.resolve() raises RuntimeError for a loop on Python 3.11: SOURCE, OUT and -o were exit 1
    with a traceback; a looping file listed in a --labels CSV stopped the whole run."""
    src = make_class_folder(tmp_path / "src", {"a": 2, "b": 1})
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    (tmp_path / "lp1.png").symlink_to(tmp_path / "lp2.png")
    (tmp_path / "lp2.png").symlink_to(tmp_path / "lp1.png")
    cases = [(["export", str(tmp_path / "loop1"), str(tmp_path / "out")], "SOURCE"),
             (["export", str(src), str(tmp_path / "loop1")], "OUT"),
             (["export", str(src), str(tmp_path / "loop1" / "x")], "OUT"),
             (["tta", str(src), str(tmp_path / "loop1"), "--variants", "d4"], "OUT"),
             (["preview", str(src), "-o", str(tmp_path / "lp1.png")], "-o")]
    for args, what in cases:
        res = RUNNER.invoke(main, args)
        assert res.exit_code == 2 and f"{what} " in res.output and "a loop of symbolic links" in res.output, \
            (args, res.output)
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(flat / "ok.png")
    (flat / "self.png").symlink_to(flat / "self.png")
    (tmp_path / "l.csv").write_text("ok.png,a\nself.png,b\n")
    res = _cli("export", str(flat), str(tmp_path / "flat-out"), "--labels", str(tmp_path / "l.csv"), "--workers", "1")
    assert res.exit_code == 0, res.output
    errors = [json.loads(line) for line in (tmp_path / "flat-out" / "errors-train.jsonl").read_text().splitlines()]
    assert [e["source_id"] for e in errors] == ["self.png"]


def _hang(signum: int, frame: object) -> None:
    raise TimeoutError("blocked on a FIFO")


def test_a_fifo_planted_in_out_never_hangs(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer: inspect and --resume hung forever."""
    src = make_class_folder(tmp_path / "src", {"a": 1})
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "augexport.json")
    previous = signal.signal(signal.SIGALRM, _hang)
    for args in (["inspect", str(out)], ["export", str(src), str(out), "--resume"]):
        signal.alarm(30)
        try:
            res = RUNNER.invoke(main, args)
        finally:
            signal.alarm(0)
        assert res.exit_code == 2 and "augexport.json is not a regular file" in res.output, (args, res.output)
    signal.signal(signal.SIGALRM, previous)
    lock_out = tmp_path / "lock-out"
    lock_out.mkdir()
    os.mkfifo(lock_out / LOCK)
    res = _cli("export", str(src), str(lock_out))
    assert res.exit_code == 2 and f"{LOCK} is not a regular file" in res.output, res.output
    os.mkfifo(tmp_path / "fifo")
    res = _cli("inspect", str(tmp_path / "fifo"))
    assert res.exit_code == 2 and "is not a folder" in res.output, res.output


def test_a_carriage_return_in_a_file_name_keeps_labels_csv_readable(tmp_path: Path) -> None:
    """The csv module quotes only its line terminator's characters: a bare \\r ended the row."""
    src = make_class_folder(tmp_path / "src", {"a": 2})
    os.rename(src / "a" / "img_001.png", src / "a" / "x\ry.png")
    out = tmp_path / "out"
    res = _cli("export", str(src), str(out), "--format", "both", "--encoding", "png", "--workers", "1")
    assert res.exit_code == 0, res.output
    res = _cli("inspect", str(out), "--verify")
    assert res.exit_code == 0, res.output
    with open(out / "images" / "train" / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 3 and len({len(r) for r in rows}) == 1
    assert sorted(r[rows[0].index("source_id")] for r in rows[1:]) == ["a/img_000.png", "a/x\ry.png"]


def test_images_past_the_codecs_limits_are_one_skip_each(tmp_path: Path) -> None:
    """A side over JPEG's 65500 px failed the encoder and killed the run (exit 1, traceback); a
    keras warp of a side of 32767+ px asserted in OpenCV and lost the image's original too."""
    folder = tmp_path / "src" / "a"
    folder.mkdir(parents=True)
    Image.new("RGB", (70000, 1), (10, 20, 30)).save(folder / "long.png")
    Image.new("RGB", (16, 12), (200, 100, 0)).save(folder / "small.png")
    res = _cli("export", str(tmp_path / "src"), str(tmp_path / "jpeg"), "--workers", "1")
    assert res.exit_code == 0, res.output
    errors = [json.loads(line) for line in (tmp_path / "jpeg" / "errors-train.jsonl").read_text().splitlines()]
    assert errors == [{"source_id": "a/long.png", "error": "1x70000 pixels (HxW): JPEG holds at most 65500 pixels "
                       "a side; export with --encoding png, or --image-size"}]
    res = _cli("export", str(tmp_path / "src"), str(tmp_path / "png"), "--workers", "1", "--encoding", "png",
               "--copies", "1", "--rotation-range", "10")
    assert res.exit_code == 0, res.output
    assert sorted((r["source_id"][0], r["copy"][0]) for r in read_records(tmp_path / "png")) == [
        (b"a/long.png", 0), (b"a/long.png", 1), (b"a/small.png", 0), (b"a/small.png", 1)]


def test_max_pixels_above_pils_own_limit_is_honoured() -> None:
    """PIL refuses twice its MAX_IMAGE_PIXELS by itself; --max-pixels decides."""
    from PIL import Image as PILImage

    limit = PILImage.MAX_IMAGE_PIXELS
    assert limit is not None
    header_only = _png_header(2 * limit + 2, 1)
    with pytest.raises(DecodeError, match=r"exceeds the limit of 1000 \(--max-pixels"):
        codec.decode(header_only, max_pixels=1000)
    with pytest.raises(DecodeError, match="corrupt or truncated"):  # past our limit check: PIL reads it
        codec.decode(header_only, max_pixels=4 * limit)
    assert PILImage.MAX_IMAGE_PIXELS == limit


def _png_header(w: int, h: int) -> bytes:
    """A PNG whose IHDR claims w x h and whose data is missing (nothing is ever allocated)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 4)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("names, needle", [
    ([" ", "b"], "is blank"),
    (["a", "a "], "are one name to TFDS"),
    (["b\udcffd", "c"], "is not valid UTF-8"),
])
def test_class_names_tfds_cannot_hold_are_refused(tmp_path: Path, names: list[str], needle: str) -> None:
    """TFDS strips names and drops blank ones (labels shift), and falls back to 0..C-1 for names
    that are not UTF-8; `inspect --verify` passed such outputs."""
    src = tmp_path / "src"
    for i, name in enumerate(names):
        folder = os.path.join(os.fsencode(src), os.fsencode(name))
        os.makedirs(folder)
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(os.fsdecode(os.path.join(folder, b"0.png")))
    res = _cli("export", str(src), str(tmp_path / "out"))
    assert res.exit_code == 2 and needle in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_macos_archive_metadata_is_no_class(tmp_path: Path) -> None:
    """An unzipped macOS archive carries __MACOSX/ (AppleDouble `._*` files): as a class it shifted
    every label by one."""
    src = make_class_folder(tmp_path / "src", {"a": 1, "b": 1})
    (src / "__MACOSX" / "a").mkdir(parents=True)
    (src / "__MACOSX" / "a" / "._img_000.png").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    res = _cli("export", str(src), str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    man = json.loads((tmp_path / "out" / "augexport.json").read_text())
    assert man["class_names"] == ["a", "b"]
    assert {"path": "__MACOSX/", "why": "archive metadata, not a class"} in man["splits"]["train"]["ignored"]


def test_out_inside_a_folder_a_class_folder_links_to_is_refused(tmp_path: Path) -> None:
    """The run wrote into the folder it read class b from; a rerun read its own output as images."""
    src = make_class_folder(tmp_path / "src", {"a": 1})
    elsewhere = make_class_folder(tmp_path / "elsewhere", {"b": 1}) / "b"
    (src / "b").symlink_to(elsewhere)
    res = _cli("export", str(src), str(elsewhere / "out"), "--format", "images")
    assert res.exit_code == 2 and "which SOURCE's class folder 'b' links to" in res.output, res.output
    assert sorted(p.name for p in elsewhere.iterdir()) == ["img_000.png"]


def test_postscript_is_never_handed_to_ghostscript() -> None:
    """PIL opens EPS by its content whatever the extension, and renders it with a Ghostscript
    subprocess at load(): untrusted PostScript is refused as unreadable instead."""
    import io

    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nnewpath 0 0 moveto 8 8 lineto stroke\n%%EOF\n"
    with Image.open(io.BytesIO(eps)) as img:
        assert img.format == "EPS"  # what PIL alone would do with it
    with pytest.raises(DecodeError, match="not a readable image"):
        codec.decode(eps)


def test_a_full_disk_leaves_no_temporary_shards_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On ENOSPC the abort closed the open shard first, whose flush failed again: every temporary
    shard stayed, filling the disk, while the journal that could have used them was removed."""
    import errno
    import io

    from augexport import api
    from augexport.errors import ExportFailed
    from augexport.outdir import OutDir

    budget = [60_000]

    class Full(io.RawIOBase):
        def __init__(self, raw: io.BufferedWriter) -> None:
            self.raw = raw

        def writable(self) -> bool:
            return True

        def write(self, b: object) -> int:
            data = bytes(b)  # type: ignore[call-overload]
            if budget[0] < len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            budget[0] -= len(data)
            return self.raw.write(data)

        def fileno(self) -> int:
            return self.raw.fileno()

        def close(self) -> None:
            self.raw.close()
            super().close()

    real = OutDir.open_new

    def open_new(self: OutDir, name: str) -> object:
        f = real(self, name)
        return io.BufferedWriter(Full(f), buffer_size=8192) if ".tfrecord" in name else f

    monkeypatch.setattr(OutDir, "open_new", open_new)
    src = make_class_folder(tmp_path / "src", {"a": 12, "b": 12}, size=(48, 64))
    out = tmp_path / "out"
    with pytest.raises(ExportFailed, match="No space left on device"):
        api.export(str(src), out, workers=1, shard_size="16KiB", encoding="png", copies=2,
                   overrides={"stages": [{"cutout": {}}]})
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == [], sorted(p.name for p in out.iterdir())


def test_a_failed_finalize_leaves_metadata_that_agrees_with_the_manifest(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A write error at the manifest (the last write) left dataset_info.json describing the new
    split, whose shards were renamed back to temporary names; a fresh OUT kept final-named metadata
    with no manifest."""
    import errno

    from augexport import api, run
    from augexport.errors import ExportFailed

    src = make_class_folder(tmp_path / "src", {"a": 3, "b": 3})
    out = tmp_path / "out"
    api.export(str(src), out, workers=1)
    before = {name: (out / name).read_bytes() for name in ("dataset_info.json", "features.json", "label.labels.txt")}

    def full(outdir: object, manifest: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run, "write_manifest", full)
    with pytest.raises(ExportFailed, match="write error while finalizing"):
        api.export(str(src), out, workers=1, split="val")
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not (out / "errors-val.jsonl").exists()
    monkeypatch.undo()
    res = RUNNER.invoke(main, ["inspect", str(out), "--verify"])  # only the interrupted run is a problem
    assert res.exit_code == 1 and "1 problem(s)" in res.output and "dataset_info" not in res.output, res.output
    monkeypatch.setattr(run, "write_manifest", full)
    with pytest.raises(ExportFailed):
        api.export(str(src), tmp_path / "fresh", workers=1)
    left = sorted(p.name for p in (tmp_path / "fresh").iterdir())
    assert not set(left) & {"dataset_info.json", "features.json", "label.labels.txt", "errors-train.jsonl"}, left
    monkeypatch.undo()
    res = RUNNER.invoke(main, ["export", str(src), str(tmp_path / "fresh"), "--resume", "--workers", "1"])
    assert res.exit_code == 0, res.output  # the journal stayed: --resume completes it
    assert RUNNER.invoke(main, ["inspect", str(tmp_path / "fresh"), "--verify"]).exit_code == 0
