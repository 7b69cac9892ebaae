"""Pipeline spec (YAML/JSON file + CLI overrides) -> a validated `Pipeline` of stages.

The whole spec is validated when it is built, before any work; errors name the path
(`stages[1].imgaug[2].GaussianBlur.sigma`), the value and what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .classes import MAX_COPIES, ClassOverride, build_classes
from .errors import ConfigError, UsageError
from .fs import is_url, read_bytes
from .mixing import Mixing, build_mixing
from .registry import Stage, StageFailed, build_stages, run_stages
from .resize import KEYS as RESIZE_KEYS
from .resize import ResizeMode, resize_mode
from .rng import example_rng
from .spec import boolean, close_matches, number
from .specfile import MAX_CONFIG_BYTES, load_yaml, parse_config, read_config_bytes
from .stages import builtin_stage

TOP_KEYS = ("version", "seed", "copies", "include_original", "image_size", *RESIZE_KEYS, "stages", "mix",
            "label_smoothing", "classes")


@dataclass
class Pipeline:
    seed: int = 0
    copies: int = 0
    include_original: bool = True
    image_size: tuple[int, int] | None = None
    stages: list[Stage] = field(default_factory=list)
    mix: Mixing | None = None
    label_smoothing: float = 0.0
    source: str | None = None
    classes: dict[str, ClassOverride] = field(default_factory=dict)
    resize: ResizeMode = field(default_factory=ResizeMode)  # how images reach image_size (resize.py)

    def to_spec(self) -> dict[str, Any]:
        """The resolved pipeline: what the manifest records and what workers rebuild from."""
        spec = {
            "version": 1,
            "seed": self.seed,
            "copies": self.copies,
            "include_original": self.include_original,
            "image_size": list(self.image_size) if self.image_size else None,
            **self.resize.to_spec(),
            "stages": [{s.name: s.to_spec()} for s in self.stages],
            "mix": self.mix.to_spec() if self.mix else None,
            "label_smoothing": self.label_smoothing,
        }
        if self.classes:
            spec["classes"] = {name: c.to_spec() for name, c in self.classes.items()}
        return spec

    def copy_indices(self) -> list[int]:
        """The `copy` values written per source image, in order (0 = the original)."""
        return ([0] if self.include_original else []) + list(range(1, self.copies + 1))


def parse_image_size(value: Any, path: str = "image_size") -> tuple[int, int] | None:
    """`224`, `"224"`, `"224x160"` (HxW) or `[224, 160]` -> (H, W)."""
    if value is None:
        return None
    dims: list[Any]
    if isinstance(value, str):
        dims = value.lower().split("x")
        try:
            dims = [int(d) for d in dims]
        except ValueError:
            raise ConfigError(path, f"{value!r} is not a size; accepted: an integer like 224 or HxW like 224x160") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        dims = [value]
    elif isinstance(value, (list, tuple)):
        dims = list(value)
    else:
        raise ConfigError(path, f"{value!r} is not a size; accepted: an integer like 224 or [H, W]")
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 16384 for d in dims):
        raise ConfigError(path, f"{value!r} is not a size; accepted: 1..16384 as an integer or [H, W]")
    return int(dims[0]), int(dims[1])


def load_spec_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON pipeline file (a local path or a URL) into a plain dict (no validation
    yet), within the bounds of `specfile` (regular file, size, alias expansion, depth)."""
    where = str(path)
    try:
        raw = read_bytes(where, f"--config {where}", MAX_CONFIG_BYTES) if is_url(where) else read_config_bytes(where)
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("", "pipeline file is not UTF-8 text", source=where) from None
    path = Path(where.split("?", 1)[0])  # only its suffix is used below
    try:
        data = parse_config(text, json_file=path.suffix.lower() == ".json")
    except RecursionError:
        raise ConfigError("", "cannot parse pipeline file: nested too deeply", source=where) from None
    except Exception as exc:  # any parser error is the user's file, not our bug
        raise ConfigError("", f"cannot parse pipeline file: {_parse_error(exc)}", source=where) from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError("", f"the pipeline file must be a mapping at the top level, got {type(data).__name__}", source=where)
    return dict(data)


def _parse_error(exc: Exception) -> str:
    """`line 3, column 9: expected ',' or ']'` for YAML errors; JSON's own message names the line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:
        context = getattr(exc, "context", None)
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")
    return str(exc)


def build_pipeline(spec: Mapping[str, Any], source: str | None = None) -> Pipeline:
    """Validate a whole spec (file contents with CLI overrides merged) into a `Pipeline`."""
    try:
        return _build(spec, source)
    except ConfigError as exc:
        if source and exc.source is None:
            raise ConfigError(exc.path, str(exc).split(": ", 1)[-1] if exc.path else str(exc), source=source) from None
        raise


def _build(spec: Mapping[str, Any], source: str | None) -> Pipeline:
    for key in spec:
        if key not in TOP_KEYS:
            raise ConfigError(str(key), f"unknown key; accepted: {', '.join(TOP_KEYS)}{close_matches(key, TOP_KEYS)}")
    version = spec.get("version", 1)
    if isinstance(version, bool) or version != 1:
        raise ConfigError("version", f"{version!r} is not supported; accepted: 1")
    seed = number(0, 2**63 - 1, integer=True)(spec.get("seed", 0), "seed")
    stages = build_stages(spec.get("stages"), "stages")
    mix = build_mixing(spec.get("mix"), "mix")
    classes = build_classes(spec.get("classes"), "classes")
    default_copies = 1 if (stages or mix) else 0
    copies = spec.get("copies")
    copies = default_copies if copies is None else number(0, MAX_COPIES, integer=True)(copies, "copies")
    include_original = boolean(spec.get("include_original", True), "include_original")
    image_size = parse_image_size(spec.get("image_size"))
    some_copies = copies > 0 or any((c.copies or 0) > 0 or c.target_count is not None for c in classes.values())
    if not some_copies and not include_original:
        raise ConfigError("copies", "copies is 0 and include_original is false: nothing would be written")
    if mix is not None and not some_copies:
        raise ConfigError("mix", "mixing applies to augmented copies, but copies is 0; set copies >= 1")
    return Pipeline(
        seed=seed,
        copies=copies,
        include_original=include_original,
        image_size=image_size,
        resize=resize_mode(spec, image_size),
        stages=stages,
        mix=mix,
        label_smoothing=number(0, 1, hi_open=True)(spec.get("label_smoothing", 0.0), "label_smoothing"),
        source=source,
        classes=classes,
    )


def dry_run(pipeline: Pipeline, channels: int) -> None:
    """Run every stage once on a small synthetic image with the export's channel count, so a stage
    that cannot work at all (e.g. a colour-only augmenter with --channels 1) is a usage error before
    any work, not a failure on every image."""
    import numpy as np

    yy, xx = np.mgrid[0:48, 0:64]
    image = np.stack([(xx * 4 + yy * 2 + 40 * c) % 256 for c in range(channels)], axis=2).astype(np.uint8)
    rng = example_rng(pipeline.seed, "#dry-run", 1)
    for i, stage in enumerate(pipeline.stages):
        try:  # every stage applied whatever its p: a small p must not let it skip its own check
            image, _ = run_stages([stage], rng, image, apply_all=True)
        except StageFailed as failed:  # any failure here is the spec's, reported with its path
            exc = failed.error
            raise ConfigError(f"stages[{i}].{stage.name}", f"fails on a 48x64 image with {channels} channel(s): "
                              f"{type(exc).__name__}: {exc}", source=pipeline.source) from None
        if image.ndim != 3 or image.shape[2] != channels:  # the TFDS metadata declares one channel count
            raise ConfigError(f"stages[{i}].{stage.name}", f"returns {image.shape[-1]} channel(s) but the export has "
                              f"--channels {channels}; every stage must keep the export's channel count",
                              source=pipeline.source)


def resolve_pipeline(config: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Pipeline:
    """Load the pipeline file (if any), merge overrides (None values ignored), validate."""
    spec: dict[str, Any] = load_spec_file(config) if config else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            spec[key] = value
    return build_pipeline(spec, source=str(config) if config else None)


def parse_flag_value(text: Any) -> Any:
    """Flag text -> YAML scalar or list (`20`, `0.1`, `[0.8,1.2]`, `0.8,1.2`, `nearest`); non-text passes
    through. The bare comma form is what a shell user types for a range flag (`--zoom-range 0.9,1.1`)."""
    if not isinstance(text, str):
        return text
    import yaml

    if "," in text and not text.lstrip().startswith(("[", "{")):
        try:
            items = load_yaml(f"[{text}]")
        except yaml.YAMLError:
            items = None
        if isinstance(items, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
            return items
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


_TOP_FLAGS = {"seed": "--seed", "copies": "--copies", "include_original": "--include-original/--no-include-original",
              "image_size": "--image-size", "label_smoothing": "--label-smoothing", "interpolation": "--interpolation",
              "crop_to_aspect_ratio": "--crop-to-aspect-ratio", "pad_to_aspect_ratio": "--pad-to-aspect-ratio"}
_MIX_FLAGS = {"method": "--mix", "alpha": "--mix-alpha", "p": "--mix-p"}


def resolve_with_flags(config: str | Path | None, overrides: Mapping[str, Any] | None,
                       flags: Mapping[str, Any]) -> Pipeline:
    """`resolve_pipeline` of the file, the API's overrides and the CLI's (`flag_overrides`). An error
    about a value a flag gave names the flag (`--zoom-range`), not the key the flag became."""
    try:
        return resolve_pipeline(config, {**(overrides or {}), **{k: v for k, v in flags.items() if v is not None}})
    except ConfigError as exc:
        found = _flag_for(exc.path, flags, config)
        if found is None:
            raise
        flag, rest = found
        message = str(exc).split(f"{exc.path}: ", 1)[-1]
        if flag == "--mix" and "accepted: " in message:  # the flag also takes `none` (mixing off)
            message = message.replace("accepted: cutmix, mixup", "accepted: cutmix, mixup, none")
        raise UsageError(f"{flag}{rest}: {message}") from None


def _flag_for(path: str, flags: Mapping[str, Any], config: str | Path | None) -> tuple[str, str] | None:
    """(flag, rest of the path) when the value at `path` came from a flag, else None."""
    m = re.match(r"stages\[0\]\.keras\.(\w+)(.*)$", path)
    if m and not config and isinstance(flags.get("stages"), list) and m.group(1) in flags["stages"][0].get("keras", {}):
        return "--" + m.group(1).replace("_", "-"), m.group(2)
    m = re.match(r"mix(?:\[(\d+)\])?\.(\w+)(.*)$", path)  # mix.p, or mix[1].p of a chain
    mix = flags.get("mix")
    if m and m.group(2) in _MIX_FLAGS and isinstance(mix, (dict, list)):
        index, key = int(m.group(1) or 0), m.group(2)
        given = mix[index] if isinstance(mix, list) and index < len(mix) else mix
        base = (load_spec_file(config).get("mix") or {}) if config else {}
        base = base[index] if isinstance(base, list) and index < len(base) else base
        if isinstance(given, Mapping) and (not isinstance(base, Mapping) or base.get(key) != given.get(key)):
            return _MIX_FLAGS[key], m.group(3)
        return None
    m = re.match(r"(\w+)(.*)$", path)
    if m and m.group(1) in _TOP_FLAGS and flags.get(m.group(1)) is not None:
        return _TOP_FLAGS[m.group(1)], m.group(2)
    return None


def keras_flag_names() -> list[str]:
    """Every ImageDataGenerator argument of the `keras` stage: each is also a CLI flag."""
    cls = builtin_stage("keras")
    return [p.name for p in cls.schema] if cls else []


def flag_overrides(config: str | Path | None, *, seed: int | None = None, copies: int | None = None,
                   include_original: bool | None = None, image_size: Any = None,
                   label_smoothing: float | None = None, keras: Mapping[str, Any] | None = None,
                   mix_method: str | None = None, mix_alpha: float | None = None,
                   mix_p: float | None = None, resize: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Pipeline overrides from CLI flags; keras flags build a `keras` stage when there is no --config.
    `resize`: the --interpolation / --crop-to-aspect-ratio / --pad-to-aspect-ratio values."""
    over: dict[str, Any] = {"seed": seed, "copies": copies, "include_original": include_original,
                            "image_size": image_size, "label_smoothing": label_smoothing,
                            **{k: v for k, v in (resize or {}).items() if v not in (None, False)}}
    given = {k: parse_flag_value(v) for k, v in (keras or {}).items() if v is not None}
    if given:
        if config:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise UsageError(f"{flags}: ImageDataGenerator flags build a keras stage only without --config; "
                             f"put them under stages: - keras: in {config}")
        over["stages"] = [{"keras": given}]
    mix = {k: v for k, v in (("method", mix_method), ("alpha", mix_alpha), ("p", mix_p)) if v is not None}
    if mix.get("method") == "none":
        if len(mix) > 1:
            raise UsageError("--mix none turns mixing off; drop --mix-alpha/--mix-p")
        over["mix"] = False
    elif mix:
        base = (load_spec_file(config).get("mix") or {}) if config else {}
        if "method" not in mix and not base:
            raise UsageError("--mix-alpha/--mix-p tune mixing, which is off: add --mix cutmix|mixup "
                             "(or a mix: block in --config)")
        over["mix"] = _mix_flags(base, mix, config)
    return over


def _mix_flags(base: Any, mix: dict[str, Any], config: str | Path | None) -> Any:
    """The pipeline's `mix:` with --mix/--mix-alpha/--mix-p applied: to the entry, or to every entry
    of a chain; --mix never silently replaces a chain or a `switch:` (it names a single method)."""
    chained = isinstance(base, list)
    if "method" in mix and (chained or (isinstance(base, dict) and "switch" in base)):
        what = "a list of entries applied in order" if chained else "a switch: of methods picked per copy"
        raise UsageError(f"--mix {mix['method']}: the mix: of {config} is {what}, which one method would replace; "
                         "edit the file, or use --mix-alpha/--mix-p, which apply to every entry")
    if chained:
        return [{**entry, **mix} if isinstance(entry, dict) else entry for entry in base]
    return {**(base if isinstance(base, dict) else {}), **mix}
