"""`augexport ops`: the pipeline vocabulary, generated from the registry."""

from __future__ import annotations

from .errors import UsageError
from .pipeline import MIX_METHODS, TOP_KEYS
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
    return "\n".join(lines)
