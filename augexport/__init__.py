"""augexport: offline image-dataset augmentation and export to TFDS-loadable TFRecord shards.

`augexport.export_arrays(x, y, out, **options)` and `augexport.load_arrays(out, split)` are the
array API (see `augexport.api`); they are loaded on first use, so `import augexport` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = ("export_arrays", "load_arrays")
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    # by name at first use, not by an import statement: the package stays light to import and its
    # own import graph (tests/test_import_graph.py) keeps the facade out of the bottom room
    if name in _LAZY:
        return getattr(importlib.import_module("augexport.api"), name)
    raise AttributeError(f"module 'augexport' has no attribute {name!r}")
