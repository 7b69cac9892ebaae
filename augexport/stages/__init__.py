"""Built-in stages. Importing this package only names them: each stage module is imported (and
registers its stages) when a pipeline first uses one, so a worker process starts without the
kernels it will not run. None of them imports TensorFlow; imgaug_stage imports imgaug lazily,
only when an imgaug stage is built."""

from ..registry import Stage, register_lazy, registered, stage_class

__all__ = ["BUILTIN", "builtin_stage", "builtin_stages", "stage_class"]

# stage name -> module (tests/test_stage_contract.py checks each module registers exactly these)
BUILTIN: dict[str, str] = {
    "augmix": "augmix",
    "cutout": "cutout",
    "grayscale": "grayscale",
    "gridmask": "gridmask",
    "imgaug": "imgaug_stage",
    "keras": "keras",
    "one_of": "control",
    "randaugment": "randaugment",
    "random_erasing": "random_erasing",
    "random_resized_crop": "random_resized_crop",
    "sequential": "control",
    "some_of": "control",
    "tf_image": "tf_image",
    "tta_brightness": "tta",
    "tta_crop": "tta",
    "tta_dihedral": "tta",
    "tta_scale": "tta",
    "tta_shift": "tta",
}
register_lazy({name: f"{__name__}.{module}" for name, module in BUILTIN.items()})


def builtin_stages() -> dict[str, type[Stage]]:
    """Every registered stage by name (the built-in ones imported now if they were not yet)."""
    return registered()


def builtin_stage(name: str) -> type[Stage] | None:
    """One built-in stage's class, importing only its module (the CLI's keras flags)."""
    return stage_class(name, name) if name in BUILTIN else None
