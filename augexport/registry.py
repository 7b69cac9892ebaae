"""The stage registry: pipeline names -> stage classes. Feeds the spec loader, `augexport ops`
and the registry-wide contract tests."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .errors import ConfigError
from .spec import Param, close_matches, validate_mapping

REGISTRY: dict[str, type[Stage]] = {}


class Stage:
    """A per-image transform in two steps: `sample(rng, shape) -> params`, then the pure
    `apply(image, params) -> image`. Params are plain JSON data, recorded in every record.

    A stage whose parameters include `p` is applied with probability p: one coin is drawn here,
    and only when p < 1, so `p: 1` draws exactly what the stage without `p` draws (the same rule
    as the ops inside `tf_image`). The outcome is recorded as `applied`.
    """

    name: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    schema: ClassVar[tuple[Param, ...]] = ()  # the documented, validated parameters

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    @classmethod
    def from_spec(cls, spec: Any, path: str) -> Stage:
        return cls(validate_mapping(spec, cls.schema, path))

    def to_spec(self) -> Any:
        """The resolved, JSON-able spec (what the manifest records)."""
        return dict(self.config)

    # -- the two steps -------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        raise NotImplementedError

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError

    # -- the probability wrapper, applied once here ---------------------------------------
    def draw(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        if "p" not in self.config:
            return self.sample(rng, shape)
        if self.config["p"] < 1.0 and not rng.random() < self.config["p"]:
            return {"applied": False}
        return {"applied": True, **self.sample(rng, shape)}

    def run(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        if params.get("applied", True) is False:
            return image
        return self.apply(image, params)

    # -- documentation ---------------------------------------------------------------------
    @classmethod
    def ops_rows(cls) -> list[tuple[str, str, str, str]]:
        """(op, parameter, type, default and meaning) rows for `augexport ops`."""
        return [("", p.name, p.kind, f"{p.default!r}  {p.doc}") for p in cls.schema]


def register(cls: type[Stage]) -> type[Stage]:
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"stage name {cls.name!r} is empty or registered twice")
    REGISTRY[cls.name] = cls
    return cls


def stage_class(name: str, path: str) -> type[Stage]:
    load_builtin_stages()
    if name not in REGISTRY:
        raise ConfigError(path, f"unknown stage {name!r}; accepted: {', '.join(sorted(REGISTRY))}{close_matches(name, REGISTRY)}")
    return REGISTRY[name]


def load_builtin_stages() -> dict[str, type[Stage]]:
    """Import the stage modules so that they register (cheap: none imports TensorFlow)."""
    from . import stages  # noqa: F401

    return REGISTRY
