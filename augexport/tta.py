"""`augexport tta`: a deterministic test-time-augmentation set, written through the export engine.

`--variants` is a small vocabulary (below) parsed into named variant entries: plain JSON (name,
kind, params, invertibility) that the manifest lists and a worker rebuilds into stages. Copy k of
every source image renders variant k (`plan.TtaPlan`), in source order and never shuffled, so the
records of one image are consecutive and in the order given. Deterministic variants take no
randomness at all; `random:N` runs a training pipeline's stages with the record's own generator
`example_rng(seed, source_id, copy)`, `copy` being the variant index, exactly as `export` does for
its augmented copies. `augexport.tta_merge` merges a model's per-variant predictions back.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError, UsageError
from .options import ExportOptions
from .pipeline import build_pipeline, load_spec_file, parse_image_size
from .run import ExportResult, ExportRun
from .stages.tta import CORNERS, DIHEDRAL, INVERSE, VariantError, crop_box, number_name

VOCABULARY = ("identity", "hflip", "vflip", "rot90", "rot180", "rot270", "transpose", "transverse", "d4",
              "five_crop:S", "ten_crop:S", "scale:F", "shift:DY,DX", "brightness:F", "random:N[@pipeline.yaml]")
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _entry(name: str, kind: str, params: dict[str, Any], inverse: str | None, exact: bool) -> dict[str, Any]:
    """The JSON form of a variant: what the manifest lists and what a worker renders from."""
    return {"name": name, "kind": kind, "params": params, "invertible": inverse is not None,
            "inverse": inverse, "exact_inverse": exact and inverse is not None}


MIN_CROP_PX = 8  # a crop of a few pixels keeps nothing a model can use: `five_crop:2` is a typo


def _size_arg(text: str, where: str) -> list[Any]:
    """`24` (pixels, square), `24x20` (HxW pixels) or `0.875` (fraction of each side)."""
    m = re.fullmatch(r"(\d+)(?:x(\d+))?", text)
    if m:
        h = int(m.group(1))
        w = int(m.group(2)) if m.group(2) else h
        if h >= MIN_CROP_PX and w >= MIN_CROP_PX:
            return ["px", h, w]
    elif re.fullmatch(_NUM, text) and 0 < float(text) <= 1:
        return ["frac", float(text), float(text)]
    raise UsageError(f"--variants {where}: size {text!r} is not accepted; accepted: pixels of at least "
                     f"{MIN_CROP_PX} (24), HxW pixels (24x20) or a fraction of each side in (0, 1] (0.875)")


def _float_arg(text: str, where: str, lo_open: float = 0.0) -> float:
    if not re.fullmatch(_NUM, text) or float(text) <= lo_open:
        raise UsageError(f"--variants {where}: {text!r} is not accepted; accepted: a number > {lo_open:g}")
    return float(text)


# export's options that would make records other than the variants (ExportOptions' names)
NOT_FOR_TTA = ("overrides", "copies", "include_original", "keras", "label_smoothing", "mix_method", "mix_alpha", "mix_p")
MAX_VARIANTS = 10000  # the same bound as `copies`
MAX_SHIFT_PX = 100_000


def _shift_arg(text: str, where: str) -> list[Any]:
    parts = text.split(",")
    if len(parts) != 2 or not all(re.fullmatch(_NUM, p.strip()) for p in parts):
        raise UsageError(f"--variants {where}: {text!r} is not accepted; accepted: DY,DX as pixels (2,-3) "
                         "or fractions of the height and width (0.1,0)")
    vals = [p.strip() for p in parts]
    if all(re.fullmatch(r"[-+]?\d+", v) for v in vals):
        if any(abs(int(v)) > MAX_SHIFT_PX for v in vals):
            raise UsageError(f"--variants {where}: shifts are limited to {MAX_SHIFT_PX} pixels")
        return ["px", int(vals[0]), int(vals[1])]
    fr = [float(v) for v in vals]
    if any(abs(f) >= 1 for f in fr):
        raise UsageError(f"--variants {where}: fractions must be in (-1, 1); use integers for pixels")
    return ["frac", *fr]


def _random_stages(path: str | None, default: str | None, where: str) -> tuple[list[Any], str]:
    source = path or default
    if source is None:
        raise UsageError(f"--variants {where}: random:N needs a training pipeline: write random:N@pipeline.yaml "
                         "or pass --config pipeline.yaml")
    spec = load_spec_file(source)
    stages = build_pipeline({"stages": spec.get("stages")}, source=str(source)).to_spec()["stages"]
    if not stages:
        raise ConfigError("stages", "random:N draws from the pipeline's stages, but it has none", source=str(source))
    return stages, str(source)


def split_spec(spec: str | Iterable[str]) -> list[str]:
    """`identity,hflip,shift:2,-3` -> items; a number after `shift:DY` is its DX, not a variant."""
    texts = [spec] if isinstance(spec, str) else list(spec)
    items: list[str] = []
    for text in texts:
        for tok in (t.strip() for t in text.split(",")):
            if items and items[-1].startswith("shift:") and "," not in items[-1] and re.fullmatch(_NUM, tok):
                items[-1] += "," + tok
            elif tok:
                items.append(tok)
    return items


def _size_tag(size: list[Any]) -> str:
    unit, h, w = size
    if unit == "frac":
        return number_name(h)
    return str(h) if h == w else f"{h}x{w}"


def _name_crop_sizes(entries: list[dict[str, Any]]) -> None:
    """Crops of more than one size (`five_crop:224,five_crop:192`) carry their size in their names
    (`crop_tl_224`), so each is its own variant; crops of one size keep the short names."""
    crops = [e for e in entries if e["kind"] == "crop"]
    if len({_size_tag(e["params"]["size"]) for e in crops}) < 2:
        return
    for e in crops:
        p = e["params"]
        e["name"] = f"crop_{p['corner']}_{_size_tag(p['size'])}" + ("_hflip" if p["hflip"] else "")


def parse_variants(spec: str | Iterable[str], config: str | None = None) -> list[dict[str, Any]]:
    """Parse a variant spec into the ordered list of variant entries; names must be unique.

    `config` is the pipeline file used by `random:N` without `@file`."""
    out: list[dict[str, Any]] = []
    draws = 0
    for item in split_spec(spec):
        kind, _, arg = item.partition(":")
        kind = kind.strip().lower()
        where = f"{item!r}"
        if kind in DIHEDRAL:
            if arg:
                raise UsageError(f"--variants {where}: {kind} takes no argument")
            out.append(_entry(kind, "dihedral", {"op": kind}, INVERSE[kind], True))
        elif kind == "d4":
            out.extend(_entry(op, "dihedral", {"op": op}, INVERSE[op], True) for op in DIHEDRAL)
        elif kind in ("five_crop", "ten_crop"):
            size = _size_arg(arg, where)
            for flip in ((False, True) if kind == "ten_crop" else (False,)):
                for corner in CORNERS:
                    name = f"crop_{corner}" + ("_hflip" if flip else "")
                    out.append(_entry(name, "crop", {"corner": corner, "size": size, "hflip": flip}, None, False))
        elif kind == "scale":
            f = _float_arg(arg, where)
            out.append(_entry(f"scale_{number_name(f)}", "scale", {"factor": f}, f"scale:{1 / f!r}", False))
        elif kind == "shift":
            s = _shift_arg(arg, where)
            inv = f"shift:{-s[1]!r},{-s[2]!r}"
            out.append(_entry(f"shift_{number_name(s[1])}_{number_name(s[2])}", "shift", {"offset": s}, inv, False))
        elif kind == "brightness":
            f = _float_arg(arg, where)
            out.append(_entry(f"brightness_{number_name(f)}", "brightness", {"factor": f}, "identity", True))
        elif kind == "random":
            m = re.fullmatch(r"(\d+)(?:@(.+))?", arg.strip())
            if not m or not 1 <= int(m.group(1)) <= MAX_VARIANTS:
                raise UsageError(f"--variants {where}: accepted: random:N or random:N@pipeline.yaml with "
                                 f"1 <= N <= {MAX_VARIANTS}")
            stages, source = _random_stages(m.group(2), config, where)
            for _ in range(int(m.group(1))):
                out.append(_entry(f"random_{draws}", "random", {"stages": stages, "pipeline": source}, None, False))
                draws += 1
        else:
            raise UsageError(f"--variants: unknown variant {item!r}; accepted: {', '.join(VOCABULARY)}")
    if not out:
        raise UsageError(f"--variants: no variants given; accepted: {', '.join(VOCABULARY)}")
    _name_crop_sizes(out)
    seen: set[str] = set()
    gave_d4 = any(item.partition(":")[0].strip().lower() == "d4" for item in split_spec(spec))
    for e in out:
        if e["name"] in seen:
            hint = " (d4 already holds identity and every flip and rotation)" if e["kind"] == "dihedral" and gave_d4 else ""
            raise UsageError(f"--variants: variant {e['name']!r} is given twice{hint}; each variant may appear "
                             "once, or merging would weigh it twice")
        seen.add(e["name"])
    return [{"index": i, **e} for i, e in enumerate(out)]


def check_size(variants: list[dict[str, Any]], size: tuple[int, int] | None) -> None:
    """With a fixed --image-size, a crop that cannot fit, or a pixel shift that moves all the content
    out of the frame, is a usage error before any work."""
    if size is None:
        return
    for v in variants:
        offset = v["params"].get("offset") if v["kind"] == "shift" else None
        if offset and offset[0] == "px" and (abs(offset[1]) >= size[0] or abs(offset[2]) >= size[1]):
            raise UsageError(f"--variants {v['name']}: a shift of {offset[1]},{offset[2]} pixels moves the whole "
                             f"{size[0]}x{size[1]} image out of the frame (--image-size); accepted: |DY| < "
                             f"{size[0]}, |DX| < {size[1]}")
        if v["kind"] == "crop":
            try:
                crop_box(size[0], size[1], v["params"]["size"], "c")
            except VariantError as exc:
                raise UsageError(f"--variants {v['name']}: {exc} (--image-size {size[0]}x{size[1]})") from None


def export_tta(source: str, out: str | os.PathLike[str], *, variants: str | Iterable[str], config: str | None = None,
               seed: int | None = None, image_size: Any = None, split: str | None = None,
               **export_kw: Any) -> ExportResult:
    """Write split `split` (default `test`) of OUT with every variant of every source image.

    `config` is the pipeline file `random:N` draws from (and the default seed and image size);
    the remaining keyword arguments are those of `api.export` (format, encoding, workers, ...)."""
    if "shuffle" in export_kw:
        raise UsageError("tta never shuffles: variants of one image are consecutive, in the order given")
    given = sorted(k for k in NOT_FOR_TTA if export_kw.get(k) is not None)
    if given:
        raise UsageError(f"tta: {', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to a TTA set: "
                         "its records are the variants, each "
                         "a test-time view of one image (no copies, stages or mixing of export's; random:N@FILE "
                         "draws a pipeline's augmentation)")
    base = load_spec_file(config) if config else {}
    if config:  # the whole file, as export checks it: a misspelt key or stage is named, not ignored
        build_pipeline(base, source=str(config))
    entries = parse_variants(variants, config)
    size = parse_image_size(image_size if image_size is not None else base.get("image_size"),
                            "--image-size" if image_size is not None else "image_size")
    check_size(entries, size)
    overrides = {"seed": seed if seed is not None else base.get("seed", 0),
                 "image_size": list(size) if size else None,
                 "copies": len(entries) - 1, "include_original": True}
    tta_set = {"spec": ",".join(split_spec(variants)), "variants": entries}
    options = ExportOptions(overrides=overrides, split=split or "test", shuffle=False, **export_kw)
    return ExportRun(source, out, options, tta=tta_set).execute()
