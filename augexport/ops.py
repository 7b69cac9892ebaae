"""`augexport ops`: the pipeline vocabulary, generated from the registry."""

from __future__ import annotations

from .classes import CLASS_KEYS, STAGES_MODES
from .errors import UsageError
from .mixing import MIX_METHODS
from .pipeline import TOP_KEYS
from .stages import builtin_stages


def format_ops() -> str:
    registry = builtin_stages()
    lines = ["Pipeline file keys: " + ", ".join(TOP_KEYS), ""]
    for name in sorted(registry):
        cls = registry[name]
        lines.append(f"{name}: {cls.doc}")
        try:
            rows = cls.ops_rows()
        except UsageError as exc:  # e.g. imgaug not installed: say so, list the rest
            lines += [f"  (unavailable: {exc})", ""]
            continue
        for op, param, kind, doc in rows:
            head = f"  {op + '.' if op else ''}{param}"
            lines.append(f"{head:<34} {kind:<24} {doc}")
        lines.append("")
    lines.append(f"mix: batch-level mixing with soft labels; method {'|'.join(MIX_METHODS)}, alpha (> 0, default 1.0), "
                 "p (0..1, default 0.5)")
    lines.append("  mix: [{method: cutmix}, {method: mixup}]   a list: applied in order to the same copy, soft labels "
                 "composed exactly")
    lines.append("  mix: {switch: {cutmix: 0.5, mixup: 0.5}, alpha, p}   one method per copy, drawn with these "
                 "probabilities")
    lines.append("")
    lines.append(f"classes: CLASS_NAME: {{{', '.join(CLASS_KEYS)}}} per-class overrides; stages_mode "
                 f"{'|'.join(STAGES_MODES)} (default replace); target_count = total records of the class, originals "
                 "included; copies and target_count are exclusive")
    return "\n".join(lines)
