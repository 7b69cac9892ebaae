"""Per-class pipelines: the `classes:` key of a pipeline file.

    classes:
      cat: {stages: [{cutout: {}}], stages_mode: append, copies: 6}
      dog: {target_count: 500}        # class balancing: exactly 500 records of dog in the split

`stages` replaces the default stages (`stages_mode: replace`, the default) or runs after them
(`append`); `copies` is that class's augmented copies per image; `target_count` is the total
number of records of the class in the split, originals included when they are written: the
augmented copies needed are spread over the class's images as evenly as possible, the extra ones
going to the images first in the seeded order. The structure is validated with the pipeline;
class names and counts need the source, so they are checked once it is listed (exit 2 either way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, UsageError
from .registry import Stage, build_stages
from .spec import choice, close_matches, number

CLASS_KEYS = ("stages", "stages_mode", "copies", "target_count")
STAGES_MODES = ("replace", "append")
MAX_COPIES = 10000


@dataclass(frozen=True)
class ClassOverride:
    stages: tuple[Stage, ...] | None = None  # None: the default stages
    stages_mode: str = "replace"
    copies: int | None = None
    target_count: int | None = None

    def to_spec(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.stages is not None:
            out["stages"] = [{s.name: s.to_spec()} for s in self.stages]
            out["stages_mode"] = self.stages_mode
        if self.copies is not None:
            out["copies"] = self.copies
        if self.target_count is not None:
            out["target_count"] = self.target_count
        return out

    def stages_for(self, default: Sequence[Stage]) -> tuple[Stage, ...]:
        if self.stages is None:
            return tuple(default)
        return (*default, *self.stages) if self.stages_mode == "append" else self.stages


def _override(spec: Any, path: str) -> ClassOverride:
    if not isinstance(spec, Mapping):
        raise ConfigError(path, f"expected a mapping with {', '.join(CLASS_KEYS)}; got {spec!r}")
    for key in spec:
        if key not in CLASS_KEYS:
            raise ConfigError(f"{path}.{key}", f"unknown key; accepted: {', '.join(CLASS_KEYS)}"
                              f"{close_matches(str(key), CLASS_KEYS)}")
    if "copies" in spec and "target_count" in spec:
        raise ConfigError(path, "copies and target_count are exclusive: give the copies per image or the total")
    if "stages_mode" in spec and "stages" not in spec:
        raise ConfigError(f"{path}.stages_mode", "applies to the class's own stages: add stages:")
    stages = tuple(build_stages(spec["stages"], f"{path}.stages")) if "stages" in spec else None
    mode = choice(*STAGES_MODES)(spec.get("stages_mode", "replace"), f"{path}.stages_mode")
    copies = number(0, MAX_COPIES, integer=True)(spec["copies"], f"{path}.copies") if "copies" in spec else None
    target = (number(0, 10**9, integer=True)(spec["target_count"], f"{path}.target_count")
              if "target_count" in spec else None)
    return ClassOverride(stages, mode, copies, target)


def build_classes(spec: Any, path: str = "classes") -> dict[str, ClassOverride]:
    if spec is None:
        return {}
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(path, f"expected a mapping CLASS_NAME: {{stages, stages_mode, copies, target_count}}; got {spec!r}")
    return {str(name): _override(value, f"{path}.{name}") for name, value in spec.items()}


def check_classes(classes: Mapping[str, ClassOverride], class_names: Sequence[str], counts: Sequence[int],
                  include_original: bool, source: str | None = None) -> None:
    """The class names exist in SOURCE, and each target_count can be reached exactly."""
    check_class_names(classes, class_names, source)
    for name, override in classes.items():
        n = counts[class_names.index(name)]
        target = override.target_count
        if target is None:
            continue
        floor = n if include_original else 0
        if target < floor:
            raise ConfigError(f"classes.{name}.target_count", f"{target} is below the {n} originals of class "
                              f"{name!r} already written (include_original: true); accepted: >= {n}", source=source)
        if target > floor and n == 0:
            raise ConfigError(f"classes.{name}.target_count", f"class {name!r} has no images to augment", source=source)
        if target - floor > n * MAX_COPIES:  # as `copies`: a block holds every copy of its images
            raise ConfigError(f"classes.{name}.target_count", f"{target} needs more than {MAX_COPIES} augmented "
                              f"copies of each of the {n} images of class {name!r}; accepted: <= "
                              f"{floor + n * MAX_COPIES}", source=source)


def check_label_names(class_names: Sequence[str], where: str) -> None:
    """Class names TFDS can hold as given: its label.labels.txt keeps one UTF-8 name per line, and
    its ClassLabel strips each name's outer spaces and drops blank ones, so a blank name, two names
    equal once stripped, a line break or bytes that are not UTF-8 would shift or merge labels."""
    seen: dict[str, str] = {}
    for name in class_names:
        if any(ch in name for ch in "\n\r\x00"):
            raise UsageError(f"{where}: the class name {name!r} has a line break or NUL; accepted: names on one "
                             "line")
        if not name.strip():
            raise UsageError(f"{where}: the class name {name!r} is blank; TFDS would drop it and shift "
                             "every later label")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{where}: the class name {name!r} is not valid UTF-8 (a folder name in "
                             "another encoding?); accepted: UTF-8 names") from None
        key = name.strip()
        if key in seen:
            raise UsageError(f"{where}: the class names {seen[key]!r} and {name!r} are one name to TFDS, "
                             "which strips outer spaces; rename one")
        seen[key] = name


def check_class_names(classes: Mapping[str, ClassOverride], class_names: Sequence[str],
                      source: str | None = None) -> None:
    """Every class `classes:` names is one of SOURCE's."""
    unknown = [name for name in classes if name not in class_names]
    if unknown:
        hints = "".join(close_matches(u, class_names) for u in unknown[:3])
        raise ConfigError("classes", f"unknown class name(s) {', '.join(map(repr, unknown))}; accepted (the "
                          f"source's classes): {', '.join(class_names)}{hints}", source=source)


def copies_per_image(override: ClassOverride | None, default: int, n_images: int, include_original: bool) -> list[int]:
    """Augmented copies of each of a class's n images, in the class's seeded order."""
    if override is None or (override.copies is None and override.target_count is None):
        return [default] * n_images
    if override.copies is not None:
        return [override.copies] * n_images
    assert override.target_count is not None
    extra = override.target_count - (n_images if include_original else 0)
    if n_images == 0:
        return []
    q, r = divmod(extra, n_images)
    return [q + 1] * r + [q] * (n_images - r)
