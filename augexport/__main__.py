"""`augexport` / `python -m augexport`: the CLI, with a Ctrl-C during start-up (while the CLI's own
modules are still importing) ending quietly with exit 130 instead of a traceback."""

from __future__ import annotations

import os
import sys


def main() -> None:
    # Before numpy loads: its BLAS would start a thread per core here, and this process does no
    # BLAS work; with no thread but its own the CLI can fork its workers (engine.worker_start_method).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    try:
        from . import allocator
        from .cli import main as cli

        allocator.tune()  # the CLI renders images in this process too (--workers 1, the device path)
        cli()
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
