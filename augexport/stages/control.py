"""Control stages over any augexport stages: `one_of`, `some_of`, `sequential`.

They draw *which* children run (and in what order) from the record's generator; each chosen
child then samples its own parameters on the image as it is at that point (after the children
before it) and applies its kernel, through the one stage loop. The record gets the choice and
every child's entry, so `apply(image, params)` replays the copy without drawing anything:

    {"stage": "some_of", "params": {"chosen": [2, 0], "children": [{"stage": "cutout", ...}, ...]}}

`one_of` picks one child with probability proportional to `weights` (equal by default), as
KerasCV's RandomChoice / albumentations' OneOf. `some_of` picks n distinct children (n fixed, or
uniform in [lo, hi]), applied in the order listed unless `random_order` (imgaug's SomeOf).
`sequential` applies all children, in a random order with `random_order` (imgaug's Sequential).
Each takes `p` (default 1.0): the probability the control stage runs at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..registry import Stage, build_stages, register, run_stages
from ..spec import Param, boolean, number

_P = Param("p", "float in [0, 1]", 1.0, "probability that the control stage runs at all", number(0, 1))
_ORDER = Param("random_order", "bool", False, "apply the chosen children in a random order", boolean)


class ControlStage(Stage):
    """A stage whose params are a choice of children plus each child's recorded entry."""

    def __init__(self, config: dict[str, Any], children: list[Stage]) -> None:
        super().__init__(config)
        self.children = children

    @classmethod
    def _parse(cls, spec: Any, path: str) -> tuple[dict[str, Any], list[Stage]]:
        """{children: [...], ...keys} (or a bare list of children) -> (validated keys, built children)."""
        if isinstance(spec, list):
            spec = {"children": spec}
        if not isinstance(spec, Mapping):
            raise ConfigError(path, f"expected a list of stages or a mapping with children:, got {spec!r}")
        allowed = ["children", *(p.name for p in cls.schema)]
        for key in spec:
            if key not in allowed:
                raise ConfigError(f"{path}.{key}", f"unknown key; accepted: {', '.join(allowed)}")
        children = build_stages(spec.get("children"), f"{path}.children")
        if not children:
            raise ConfigError(f"{path}.children", "expected at least one child stage")
        config = {p.name: p.check(spec[p.name], f"{path}.{p.name}") if p.name in spec else p.default
                  for p in cls.schema}
        return config, children

    @classmethod
    def from_spec(cls, spec: Any, path: str) -> Stage:
        config, children = cls._parse(spec, path)
        cls.check(config, children, path)
        return cls(config, children)

    @classmethod
    def check(cls, config: dict[str, Any], children: list[Stage], path: str) -> None:
        """Cross-checks between the keys and the number of children."""

    def to_spec(self) -> Any:
        return {**self.config, "children": [{c.name: c.to_spec()} for c in self.children]}

    def choose(self, rng: np.random.Generator) -> list[int]:
        raise NotImplementedError

    def _order(self, rng: np.random.Generator, chosen: list[int]) -> list[int]:
        return [chosen[k] for k in rng.permutation(len(chosen))] if self.config["random_order"] else chosen

    def render(self, rng: np.random.Generator, image: np.ndarray, apply_all: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        if apply_all:  # the dry run: every child must work on its own
            chosen = list(range(len(self.children)))
        elif self.config["p"] < 1.0 and not rng.random() < self.config["p"]:
            return image, {"applied": False}
        else:
            chosen = self.choose(rng)
        out, entries = run_stages([self.children[i] for i in chosen], rng, image, apply_all=apply_all)
        return out, {"chosen": chosen, "children": entries}

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        raise TypeError(f"{self.name} draws while it renders (its children sample on the image as it is by then)")

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        """Replay the recorded children on `image`, drawing nothing."""
        out = image
        for i, entry in zip(params["chosen"], params["children"], strict=True):
            out = self.children[i].run(out, _child_params(entry))
        return out

    def run(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        return image if params.get("applied", True) is False else self.apply(image, params)

    @classmethod
    def ops_rows(cls) -> list[tuple[str, str, str, str]]:
        return [("", "children", "list of stages", "the stages it chooses from ({name: params} items)"),
                *super().ops_rows()]


def _child_params(entry: dict[str, Any]) -> dict[str, Any]:
    """A child's params from its record entry (TTA stages record themselves flat)."""
    if "params" in entry:
        return entry["params"]
    return {k: v for k, v in entry.items() if k not in ("stage", "variant", "kind")}


def _weights(value: Any, path: str) -> list[float] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(path, f"{value!r} is not accepted; accepted: a list of numbers >= 0, one per child")
    out = [number(0, None)(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if sum(out) <= 0:
        raise ConfigError(path, "the weights sum to 0; accepted: numbers >= 0 with a positive sum")
    return out


def _count(value: Any, path: str) -> Any:
    if isinstance(value, list):
        if len(value) != 2:
            raise ConfigError(path, f"{value!r} is not accepted; accepted: an integer n or a range [lo, hi]")
        lo, hi = (number(0, None, integer=True)(v, f"{path}[{i}]") for i, v in enumerate(value))
        if lo > hi:
            raise ConfigError(path, f"low {lo} is greater than high {hi}")
        return [lo, hi]
    return number(0, None, integer=True)(value, path)


@register
class OneOf(ControlStage):
    name = "one_of"
    doc = "one of its children, chosen with probability proportional to weights (equal by default)"
    schema = (Param("weights", "null|[w, ...]", None, "one weight >= 0 per child", _weights), _P)

    @classmethod
    def check(cls, config: dict[str, Any], children: list[Stage], path: str) -> None:
        if config["weights"] is not None and len(config["weights"]) != len(children):
            raise ConfigError(f"{path}.weights", f"{len(config['weights'])} weights for {len(children)} children; "
                                                 "accepted: one weight per child")

    def choose(self, rng: np.random.Generator) -> list[int]:
        w = self.config["weights"]
        if w is None:
            return [int(rng.integers(0, len(self.children)))]
        probs = np.asarray(w, dtype=np.float64) / float(sum(w))
        return [int(rng.choice(len(self.children), p=probs))]


@register
class SomeOf(ControlStage):
    name = "some_of"
    doc = "n distinct children (n fixed or uniform in [lo, hi]), in the listed order unless random_order"
    schema = (Param("n", "int | [lo, hi]", 1, "how many children to apply", _count), _ORDER, _P)

    @classmethod
    def check(cls, config: dict[str, Any], children: list[Stage], path: str) -> None:
        top = config["n"][1] if isinstance(config["n"], list) else config["n"]
        if top > len(children):
            raise ConfigError(f"{path}.n", f"{config['n']!r} is more than the {len(children)} children; accepted: "
                                           f"at most {len(children)}")

    def choose(self, rng: np.random.Generator) -> list[int]:
        n = self.config["n"]
        k = int(rng.integers(n[0], n[1] + 1)) if isinstance(n, list) else int(n)
        chosen = sorted(int(i) for i in rng.choice(len(self.children), size=k, replace=False))
        return self._order(rng, chosen)


@register
class Sequential(ControlStage):
    name = "sequential"
    doc = "all its children in order (a random order with random_order)"
    schema = (_ORDER, _P)

    def choose(self, rng: np.random.Generator) -> list[int]:
        return self._order(rng, list(range(len(self.children))))
