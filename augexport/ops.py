"""`augexport ops [WORD]`: the pipeline vocabulary, generated from the registry."""

from __future__ import annotations

from .classes import CLASS_KEYS, STAGES_MODES
from .errors import UsageError
from .mixing import MIX_METHODS
from .pipeline import TOP_KEYS
from .resize import INTERPOLATIONS
from .stages import builtin_stages

RESIZE_ROWS = [
    ("", "image_size", "int|[H, W]|null", "null  resize every decoded image to H x W (null: keep each image's size)"),
    ("", "interpolation", "|".join(INTERPOLATIONS) + "|null", "null  Keras' resize (tf.image.resize, never "
     "antialiased); null: augexport's stretch (OpenCV bilinear, area averaging when shrinking > 2x)"),
    ("", "crop_to_aspect_ratio", "bool", "False  centre-crop to the target aspect ratio, then resize "
     "(keras.utils.smart_resize)"),
    ("", "pad_to_aspect_ratio", "bool", "False  resize to fit, then centre on zeros (tf.image.resize_with_pad); "
     "exclusive with crop_to_aspect_ratio"),
]


TOP_DEFAULTS = ("  defaults: version 1, seed 0, copies 1 when there are stages or mix (or --mix or a keras flag) "
                "else 0, include_original true, image_size none (images keep their size), label_smoothing 0")


def format_rows(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """`  name  type  default and meaning`, one line per row, the columns of a section as wide as its
    longest name and type (so a long name never shifts the columns of the rows below it)."""
    heads = [f"{op + '.' if op else ''}{param}" for op, param, _, _ in rows]
    w_head = max((len(h) for h in heads), default=0)
    w_kind = max((len(r[2]) for r in rows), default=0)
    return [f"  {head:<{w_head}}  {kind:<{w_kind}}  {doc}" for head, (_, _, kind, doc) in zip(heads, rows, strict=True)]


def format_ops(word: str | None = None) -> str:
    """Every stage with its parameters. `word` keeps the section of that name (`keras`), else the
    sections whose stage name, op or parameter contains it (case-insensitive); UsageError when none does."""
    registry = builtin_stages()
    sections: list[tuple[str, list[str], str]] = []
    for name in sorted(registry):
        cls = registry[name]
        try:
            rows = cls.ops_rows()
        except UsageError as exc:  # e.g. imgaug not installed: say so, list the rest
            sections.append((name, [f"{name}: {cls.doc}", f"  (unavailable: {exc})"], name))
            continue
        text = " ".join([name, *(f"{op} {param}" for op, param, _, _ in rows)])
        sections.append((name, [f"{name}: {cls.doc}", *format_rows(rows)], text))
    mix = (f"mix: batch-level mixing with soft labels; method {'|'.join(MIX_METHODS)} (default cutmix), alpha "
           "(> 0, default 1.0), p (0..1, default 0.5)")
    mix_forms = ["  mix: [{method: cutmix}, {method: mixup}]   a list: applied in order to the same copy, soft "
                 "labels composed exactly",
                 "  mix: {switch: {cutmix: 0.5, mixup: 0.5}, alpha, p}   one method per copy, drawn with these "
                 "weights (normalised to sum to 1)"]
    sections.append(("mix", [mix, *mix_forms], "mix cutmix mixup switch " + " ".join(MIX_METHODS)))
    classes = (f"classes: CLASS_NAME: {{{', '.join(CLASS_KEYS)}}} per-class overrides; stages_mode "
               f"{'|'.join(STAGES_MODES)} (default replace); target_count = total records of the class, originals "
               "included; copies and target_count are exclusive")
    sections.append(("classes", [classes], "classes " + " ".join(CLASS_KEYS)))
    resize = ["resize (top-level keys; flags --image-size, --interpolation, --crop-to-aspect-ratio, "
              "--pad-to-aspect-ratio): how decoded images reach image_size", *format_rows(RESIZE_ROWS)]
    sections.append(("resize", resize, "resize " + " ".join(r[1] for r in RESIZE_ROWS) + " " + " ".join(INTERPOLATIONS)))
    if word:
        needle = word.lower()
        exact = [s for s in sections if s[0] == needle]
        sections = exact or [s for s in sections if needle in s[2].lower()]
        if not sections:
            accepted = ", ".join([*sorted(registry), "mix", "classes", "resize"])
            raise UsageError(f"ops {word!r}: no stage, op or parameter contains it; stages: {accepted}")
    lines = [] if word else ["Pipeline file keys: " + ", ".join(TOP_KEYS), TOP_DEFAULTS, ""]
    for _, body, _ in sections:
        lines += [*body, ""]
    return "\n".join(lines).rstrip("\n")
