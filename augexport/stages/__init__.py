"""Built-in stages; importing this package registers them. None of them imports TensorFlow;
imgaug_stage imports imgaug lazily, only when an imgaug stage is built."""

# isort: skip_file
# one import per line (fewer merge conflicts): each stage registers itself when imported
from . import cutout  # noqa: F401
from . import grayscale  # noqa: F401
from . import gridmask  # noqa: F401
from . import imgaug_stage  # noqa: F401
from . import keras  # noqa: F401
from . import random_erasing  # noqa: F401
from . import random_resized_crop  # noqa: F401
from . import tf_image  # noqa: F401
from . import randaugment  # noqa: F401
from . import augmix  # noqa: F401
from . import tta  # noqa: F401
from . import control  # noqa: F401

from ..registry import REGISTRY, Stage, stage_class

__all__ = ["builtin_stages", "stage_class"]


def builtin_stages() -> dict[str, type[Stage]]:
    """Every registered stage by name (importing this package registered the built-in ones)."""
    return REGISTRY
