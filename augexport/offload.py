"""Which stages of a copy the device path runs: the longest device-capable suffix of its stages.

Device-capable: a `keras` stage with `interpolation_order` 0 or 1 (spline orders 2..5 are scipy's)
and a `tf_image` stage whose ops are all colour ops or flips (crops and JPEG quality stay on the
CPU). Both keep the image's shape, so the worker can sample their params on the image as the CPU
stages leave it and get exactly the draws of the CPU path. The stages before the suffix (and any
stage that is not device-capable) run in the worker as on the CPU path. Light: no Keras here, the
workers import this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .registry import Stage

#: tf_image ops with a device kernel (device_ops): per-pixel colour ops and flips
DEVICE_TF_OPS = frozenset({"random_brightness", "random_contrast", "random_saturation", "random_hue",
                           "random_flip_left_right", "random_flip_up_down"})
#: the kernels that cost a CPU core milliseconds per 224x224 image (warp, HSV): what `auto` moves
HEAVY_TF_OPS = frozenset({"random_saturation", "random_hue"})
#: `auto` leaves images smaller than this (pixels per image, when image_size fixes it) on the CPU
AUTO_MIN_PIXELS = 96 * 96
#: ... and exports with more workers than this: the main process moves every device copy's pixels
#: (~0.3 ms per 224x224 copy, measured) while each worker saves the kernels' ~1.7 ms of a ~2.5 ms
#: copy, so past ~8 workers the CPU path's workers outrun the one main process (docs/performance.md)
AUTO_MAX_WORKERS = 8


def device_capable(stage: Stage) -> bool:
    if stage.name == "keras":
        return stage.config["interpolation_order"] in (0, 1)
    if stage.name == "tf_image":
        return all(op["op"] in DEVICE_TF_OPS for op in stage.config["ops"])
    return False


def device_start(stages: Sequence[Stage]) -> int:
    """Index of the first stage of the device suffix (len(stages) when it is empty)."""
    start = len(stages)
    while start > 0 and device_capable(stages[start - 1]):
        start -= 1
    return start


def heavy(stage: Stage) -> bool:
    if stage.name == "keras":
        return True
    return stage.name == "tf_image" and any(op["op"] in HEAVY_TF_OPS for op in stage.config["ops"])


@dataclass(frozen=True)
class Offload:
    """What the device path would run for an export: the suffix stages' names (over the default and
    every per-class stage list), whether it mixes, and whether the suffix holds a heavy kernel."""

    stages: tuple[str, ...] = ()
    mix: bool = False
    heavy: bool = False
    small_images: bool = False  # image_size fixes images below AUTO_MIN_PIXELS

    @property
    def any(self) -> bool:
        return bool(self.stages) or self.mix

    def worth_it(self, workers: int) -> bool:
        """`auto`'s rule: a GPU pays for the pixels' trips through the main process only with a
        heavy kernel (keras warp, tf_image hue/saturation), images of at least 96x96 and at most
        AUTO_MAX_WORKERS workers."""
        return self.heavy and not self.small_images and workers <= AUTO_MAX_WORKERS

    def names(self) -> list[str]:
        return [*self.stages, *(["mix"] if self.mix else [])]


def offload(stage_lists: Sequence[Sequence[Stage]], mix: bool, image_size: tuple[int, int] | None) -> Offload:
    names: list[str] = []
    is_heavy = False
    for stages in stage_lists:
        suffix = stages[device_start(stages):]
        for stage in suffix:  # each kind once, also when one list repeats it
            if stage.name not in names:
                names.append(stage.name)
        is_heavy = is_heavy or any(heavy(s) for s in suffix)
    small = image_size is not None and image_size[0] * image_size[1] < AUTO_MIN_PIXELS
    return Offload(tuple(names), mix, is_heavy, small)
