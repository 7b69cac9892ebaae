"""`augexport preview`: a PNG contact sheet of what export would write.

One row per source image: the original, then the augmented copies 1..N. The cells are rendered by
the export's own `Renderer` from the export's own block plan, so every copy (stages, mixing partner,
lambda, box) is the record export writes for that source with the same pipeline and seed; only the
final JPEG encoding is skipped (cells are lossless). Rows are the first n sources in export order
(the seeded shuffle), because mixing partners are chosen inside that order.
"""

from __future__ import annotations

import inspect
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import codec
from .classes import check_class_names
from .engine import plan_export
from .errors import UsageError
from .outdir import write_file_atomic
from .pipeline import Pipeline, dry_run, resolve_with_flags
from .plan import CopyPlan
from .records import decode_example, read_tfrecords
from .sources.arrays import array_channels, is_array_source
from .sources.open import check_tfds_flags, open_source
from .targets import check_output_file, check_outside_source
from .worker import Job, Renderer, Unit

CELL = 160  # default thumbnail box (pixels)
CAPTION = 43  # three caption lines under each thumbnail: label, copy, what was applied
LINE = 13
PAD = 6
BACKGROUND = (32, 32, 32)
TEXT = (235, 235, 235)


@dataclass
class PreviewResult:
    path: Path
    rows: int
    columns: int
    size: tuple[int, int]  # (width, height) of the PNG

    def summary(self) -> str:
        return (f"augexport: preview of {self.rows} image(s) x {self.columns - 1} copies "
                f"({self.size[0]}x{self.size[1]} px) -> {self.path}")


def grid_size(rows: int, copies: int, cell: int = CELL) -> tuple[int, int]:
    """(width, height) of a sheet with `rows` rows of 1 + `copies` cells."""
    return PAD + (copies + 1) * (cell + PAD), PAD + rows * (cell + CAPTION + PAD)


def _weight(w: float) -> str:
    """`.71`, `1.00`: two decimals without the leading zero."""
    text = f"{w:.2f}"
    return text[1:] if text.startswith("0.") else text


def soft_caption(soft: np.ndarray, class_names: list[str], top: int = 2) -> str:
    """`cat .71 / cup .29`: the largest soft-label weights (at most `top`, weights >= .005)."""
    order = np.argsort(-soft, kind="stable")[:top]
    parts = [f"{class_names[i]} {_weight(float(soft[i]))}" for i in order if soft[i] >= 0.005]
    return " / ".join(parts)


def _fit(image: np.ndarray, cell: int) -> Image.Image:
    """The image in a cell-sized box: big ones shrunk (bilinear), small ones enlarged by the largest
    whole factor that fits (nearest, so a 28-px image shows its pixels instead of a blur)."""
    img = Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).convert("RGB")
    factor = min(cell // img.width, cell // img.height)
    if factor >= 2:
        return img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    img.thumbnail((cell, cell), Image.Resampling.BILINEAR)
    return img


_KERAS_OPS = (("theta", 0.0, "rot"), ("tx", 0.0, "shift"), ("ty", 0.0, "shift"), ("shear", 0.0, "shear"),
              ("zx", 1.0, "zoom"), ("zy", 1.0, "zoom"), ("flip_horizontal", False, "hflip"),
              ("flip_vertical", False, "vflip"), ("channel_shift_intensity", None, "chshift"),
              ("brightness", None, "bright"))


def ops_caption(params: list[dict[str, Any]]) -> str:
    """What a record's stages did, from its params: `rot zoom hflip + cutout`; stages whose coin
    said no are left out, a keras stage names the transforms that are not the identity, a stage
    with a list of ops names them."""
    parts = []
    for entry in params:
        stage, p = entry.get("stage", "?"), entry.get("params", {})
        if stage == "mix" or p.get("applied") is False:
            continue
        if stage == "keras":
            names = list(dict.fromkeys(name for key, identity, name in _KERAS_OPS
                                       if p.get(key, identity) not in (identity, 0, None)))
            parts.append(" ".join(names) or "keras (identity)")
        elif isinstance(p.get("ops"), list):
            ops = [str(op.get("op", "?")).removeprefix("random_") for op in p["ops"]]
            parts.append(f"{stage}: {' '.join(ops)}" if stage != "tf_image" else " ".join(ops) or "tf_image")
        else:
            parts.append(stage)
    return " + ".join(parts)


def _preview_units(items: list[Any], class_names: list[str], pipeline: Pipeline, n: int, copies: int,
                   shuffle: bool) -> list[Unit]:
    """The export's units (with its mixing partners) for the first n sources in export order."""
    units: list[Unit] = []
    for block in plan_export(items, CopyPlan(pipeline, class_names, items), pipeline.mix, shuffle):
        for unit in block.units:
            units.append(Unit(unit.item, (0, *range(1, copies + 1)), unit.partners))
            if len(units) == n:
                return units
    return units


@dataclass
class PreviewRow:
    source_id: str
    records: list[dict[str, Any]]  # decoded Example features, copy 0 first
    error: str | None = None


PREVIEW_COPIES = 4


def preview_copies(config: str | None, copies: int | None) -> int:
    """--copies, or by default the pipeline's own when it mixes (partners are drawn among the copies,
    so the cells are the export's records only with its count), else PREVIEW_COPIES."""
    if copies is not None:
        return copies
    pipeline = resolve_with_flags(config, None, {})
    return pipeline.copies if pipeline.mix is not None and 1 <= pipeline.copies <= 64 else PREVIEW_COPIES


def preview_rows(source: str, config: str | None = None, n: int = 8, copies: int | None = None, *,
                 seed: int | None = None,
                 image_size: str | None = None, labels: str | None = None, split: str | None = None,
                 data_dir: str | None = None, shuffle: bool = True, interpolation: str | None = None,
                 crop_to_aspect_ratio: bool | None = None, pad_to_aspect_ratio: bool | None = None,
                 channels: int | None = None) -> tuple[list[str], list[PreviewRow]]:
    """The records export (with `--encoding png --copies N`) writes for the first n sources: (class names, rows)."""
    if n < 1:
        raise UsageError(f"-n {n} is not accepted; accepted: an integer >= 1")
    channels = _channels(source, channels)
    copies = preview_copies(config, copies)
    if not 1 <= copies <= 64:
        raise UsageError(f"--copies {copies} is not accepted; accepted: 1..64 for a preview")
    pipeline = resolve_with_flags(config, None, {
        "seed": seed, "image_size": image_size, "copies": copies, "include_original": True,
        "interpolation": interpolation, "crop_to_aspect_ratio": crop_to_aspect_ratio or None,
        "pad_to_aspect_ratio": pad_to_aspect_ratio or None})
    check_tfds_flags(source, split, data_dir)
    listing = open_source(source, labels=labels, split=split, data_dir=data_dir)
    if not listing.items:
        raise UsageError(f"{source} has no readable images to preview")
    check_class_names(pipeline.classes, listing.class_names, pipeline.source)  # as export checks them
    dry_run(pipeline, channels)  # a stage that cannot work on these channels is exit 2, as export's is
    renderer = Renderer(Job(pipeline.to_spec(), len(listing.class_names), channels, encoding="png",
                            class_names=tuple(listing.class_names)))
    rows = []
    for unit in _preview_units(listing.items, listing.class_names, pipeline, n, copies, shuffle):
        result = renderer.process_unit(unit)
        records = [decode_example(next(read_tfrecords(io.BytesIO(r.framed)))) for r in result.records]
        rows.append(PreviewRow(unit.item.source_id, records, result.error))
    return listing.class_names, rows


def _channels(source: str, channels: int | None) -> int:
    """--channels as export resolves it: 3, or an array source's own by default; 1 or 3."""
    if channels is None:
        return array_channels(source) if is_array_source(source) else 3
    if isinstance(channels, bool) or channels not in (1, 3):
        raise UsageError(f"--channels {channels} is not accepted; accepted: 1, 3")
    return channels


# preview_rows' keyword options, which make_preview passes on: what api.preview accepts beside its own
ROW_OPTIONS = tuple(n for n, p in inspect.signature(preview_rows).parameters.items() if p.kind is p.KEYWORD_ONLY)


def make_preview(source: str, out_png: str | os.PathLike[str], config: str | None = None, n: int = 8,
                 copies: int | None = None,
                 *, cell: int = CELL, **options: Any) -> PreviewResult:
    """Render the contact sheet of the first `n` sources with `copies` augmented copies each.
    `options`: seed, image_size, labels, split, data_dir, shuffle, channels (as for `preview_rows`)."""
    if not 32 <= cell <= 1024:
        raise UsageError(f"--cell {cell} is not accepted; accepted: 32..1024")
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise UsageError(f"-o {out_png}: the preview is a PNG; use a .png file name")
    check_output_file(out_png, "-o")
    check_outside_source(out_png, source, "-o")
    copies = preview_copies(config, copies)
    class_names, rows = preview_rows(source, config, n, copies, **options)
    width, height = grid_size(len(rows), copies, cell)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for r, row in enumerate(rows):
        y = PAD + r * (cell + CAPTION + PAD)
        if row.error is not None:
            draw.text((PAD, y + 4), f"{row.source_id}: {row.error}"[:120], fill=TEXT, font=font)
            continue
        for col, feats in enumerate(row.records):
            x = PAD + col * (cell + PAD)
            thumb = _fit(codec.decode(feats["image"][0], channels=3), cell)
            sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + (cell - thumb.height) // 2))
            for k, line in enumerate(_captions(feats, row.source_id, class_names)):
                text = _clip_left(draw, line, font, cell) if k == 1 and feats["copy"][0] == 0 else \
                    _clip(draw, line, font, cell)
                draw.text((x, y + cell + 2 + LINE * k), text, fill=TEXT, font=font)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_file_atomic(out_png, buf.getvalue())
    return PreviewResult(out_png, len(rows), copies + 1, (width, height))


def _captions(feats: dict[str, Any], source_id: str, class_names: list[str]) -> list[str]:
    """The three lines under a cell: label (or soft label), copy (the source id for the original),
    and what the copy's stages did."""
    copy = feats["copy"][0]
    params = json.loads(feats["params"][0])
    if feats["mix_source_id"][0]:
        # the first entry that mixed, as mix_source_id/mix_lambda are (a CutMix box of no pixels has lambda 1)
        method = next((p.get("method", "mix") for p in params
                       if p.get("stage") == "mix" and float(p.get("lambda", 0.0)) < 1.0), "mix")
        line1 = soft_caption(feats["soft_label"], class_names)
        line2 = f"copy {copy}, {method} lambda {_weight(float(feats['mix_lambda'][0]))}"
    else:
        line1 = class_names[feats["label"][0]]
        line2 = source_id if copy == 0 else f"copy {copy}"
    return [line1, line2, "original" if copy == 0 else (ops_caption(params) or "no change")]


def _clip_left(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """Shorten `text` from the left (`...train.tfrecord-00000-of-00001__42`): an id's end tells
    examples apart, its start is the same for all."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def _clip(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> str:
    """Shorten `text` with an ellipsis until it fits in `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."
