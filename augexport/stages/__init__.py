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

from ..errors import ConfigError
from ..registry import REGISTRY, Stage
from ..spec import close_matches


def builtin_stages() -> dict[str, type[Stage]]:
    """Every registered stage by name (importing this package registered the built-in ones)."""
    return REGISTRY


def stage_class(name: str, path: str) -> type[Stage]:
    """The stage class for a pipeline-file name; unknown names are a ConfigError at `path`."""
    if name not in REGISTRY:
        raise ConfigError(path, f"unknown stage {name!r}; accepted: {', '.join(sorted(REGISTRY))}{close_matches(name, REGISTRY)}")
    return REGISTRY[name]
