"""The stage contract and registry: pipeline names -> stage classes. Feeds the spec loader,
`augexport ops` and the registry-wide contract tests. A stage module registers its stages when it
is imported; `augexport.stages` names the built-in modules (`register_lazy`), and a module is
imported when a pipeline first names one of its stages (a worker loads only what its pipeline
uses). `augexport.stages` imports this module, never the other way round."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from .errors import ConfigError
from .spec import Param, close_matches, one_key_items, validate_mapping

REGISTRY: dict[str, type[Stage]] = {}
_LAZY: dict[str, str] = {}  # stage name -> the module that registers it when imported


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

    def record(self, params: dict[str, Any]) -> dict[str, Any]:
        """The entry this stage adds to a record's `params` list."""
        return {"stage": self.name, "params": params}

    def render(self, rng: np.random.Generator, image: np.ndarray, apply_all: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        """What the stage loop calls: sample from the record's generator, then apply. `apply_all`
        (the build-time dry run) applies the stage whatever its `p`. Control stages override this:
        they draw which children run, and each child samples on the image as it is by then."""
        if apply_all:
            params = self.sample(rng, image.shape)
            return self.apply(image, params), params
        params = self.draw(rng, image.shape)
        return self.run(image, params), params

    # -- documentation ---------------------------------------------------------------------
    @classmethod
    def ops_rows(cls) -> list[tuple[str, str, str, str]]:
        """(op, parameter, type, default and meaning) rows for `augexport ops`."""
        return [("", p.name, p.kind, f"{p.default!r}  {p.doc}") for p in cls.schema]


def register_lazy(modules: Mapping[str, str]) -> None:
    """Stage names and the modules that define them, imported on first use."""
    _LAZY.update(modules)


def registered() -> dict[str, type[Stage]]:
    """Every stage by name, importing the modules not loaded yet."""
    for name in list(_LAZY):
        _load(name)
    return REGISTRY


def _load(name: str) -> None:
    if name not in REGISTRY and name in _LAZY:
        importlib.import_module(_LAZY[name])
        if name not in REGISTRY:
            raise RuntimeError(f"module {_LAZY[name]} did not register stage {name!r}")


def register(cls: type[Stage]) -> type[Stage]:
    if not cls.name or cls.name in REGISTRY:
        raise ValueError(f"stage name {cls.name!r} is empty or registered twice")
    REGISTRY[cls.name] = cls
    return cls


class StageFailed(Exception):
    """Stage `index` of a stage list raised `error` (sampling or applying); `trail` names the
    child stages of control stages down to the one that raised."""

    def __init__(self, index: int, stage: Stage, error: Exception, trail: list[str] | None = None) -> None:
        self.index, self.stage, self.error = index, stage, error
        self.trail = [stage.name, *(trail or [])]
        super().__init__(f"{' > '.join(self.trail)}: {type(error).__name__}: {error}")


def run_stages(stages: Sequence[Stage], rng: np.random.Generator, image: np.ndarray, *,
               apply_all: bool = False) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The one stage loop (augmented copies, TTA variants, the build-time dry run): each stage
    samples from the record's generator, then applies its pure kernel. Returns the image and the
    record's `params` entries; a failing stage raises StageFailed naming it. `apply_all` (the dry
    run) applies every stage whatever its `p`."""
    params = []
    for i, stage in enumerate(stages):
        try:
            image, drawn = stage.render(rng, image, apply_all)
        except StageFailed as inner:  # a control stage's child: keep the child's own error
            raise StageFailed(i, stage, inner.error, [*inner.trail]) from inner.error
        except Exception as exc:  # any stage failure is reported with the stage that raised it
            raise StageFailed(i, stage, exc) from exc
        params.append(stage.record(drawn))
    return image, params


def stage_class(name: str, path: str) -> type[Stage]:
    """The stage class for a pipeline-file name; unknown names are a ConfigError at `path`.
    (The built-in stages are known once `augexport.stages` has been imported.)"""
    _load(name)
    if name not in REGISTRY:
        known = sorted({*REGISTRY, *_LAZY})
        raise ConfigError(path, f"unknown stage {name!r}; accepted: {', '.join(known)}{close_matches(name, known)}")
    return REGISTRY[name]


def build_stages(spec: Any, path: str) -> list[Stage]:
    """A stage list `[{name: params}, ...]` -> stages; every error names its path."""
    if spec is None:
        return []
    if not isinstance(spec, list):
        raise ConfigError(path, f"expected a list of stages like [{{keras: {{...}}}}], got {type(spec).__name__}")
    return [stage_class(name, where).from_spec(params, f"{where}.{name}")
            for where, name, params in one_key_items(spec, path, "stage")]
