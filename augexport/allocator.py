"""One allocator setting for the processes that render images.

Every decoded image, warp and encode buffer is a fresh array of a few hundred KiB. glibc serves
such sizes with mmap and hands them back with munmap, so each one is page-faulted in again on
first touch: measured here, that made the keras stage's two colour conversions cost 4x their
arithmetic, ~30% of a keras-basic export. Raising the mmap threshold keeps those buffers in the
heap for reuse (freed memory above the trim threshold is still returned). It is applied in
worker processes and in the CLI's own process, never silently in a process that only imports
augexport as a library.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # buffers below this come from the heap and are reused
TRIM_THRESHOLD = 128 << 20  # free heap above this is given back to the system


_tuned = False


def tune() -> bool:
    """Apply the thresholds (glibc only); True when they were set."""
    global _tuned
    if not sys.platform.startswith("linux"):
        return False
    try:  # glibc's soname first: ctypes.util.find_library costs ~10 ms of imports (subprocess, tempfile)
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        from ctypes.util import find_library

        try:
            libc = ctypes.CDLL(find_library("c") or "libc.so.6")
        except OSError:
            return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:  # not glibc (musl has no mallopt)
        return False
    _tuned = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned


def buffers_reused() -> bool:
    """Whether this process's image-sized buffers come from the heap (`tune()` ran): kernels that
    trade an extra temporary for speed only win then."""
    return _tuned
