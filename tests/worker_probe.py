"""Run inside a worker process by tests: which heavy libraries it has imported (none, ever)."""

from __future__ import annotations

import sys


def heavy_modules() -> list[str]:
    return sorted(m for m in ("keras", "tensorflow", "jax", "torch", "augexport.device_ops") if m in sys.modules)
