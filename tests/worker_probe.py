"""Run inside a worker process by tests: which heavy libraries it has imported (none, ever)."""

from __future__ import annotations

import sys


def heavy_modules() -> list[str]:
    return sorted(m for m in ("keras", "tensorflow", "jax", "torch", "augexport.device_ops") if m in sys.modules)


def loaded(names: list[str]) -> list[str]:
    """Which of `names` this process has imported."""
    return sorted(m for m in names if m in sys.modules)


def opencv_threads() -> int:
    """OpenCV's thread count here, importing it if a stage has not yet."""
    import cv2

    return int(cv2.getNumThreads())


def signal_handlers(names: list[str]) -> list[str]:
    """This process's handler for each signal named: "default", "ignore" or "python"."""
    import signal

    kinds = {signal.SIG_DFL: "default", signal.SIG_IGN: "ignore"}
    return [kinds.get(signal.getsignal(getattr(signal, n)), "python") for n in names]
