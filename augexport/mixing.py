"""The `mix:` key: CutMix/MixUp entries, applied in order to the same augmented copy.

    mix: {method: cutmix, alpha: 1.0, p: 0.5}                 # one entry (as always)
    mix: [{method: cutmix, p: 1.0}, {method: mixup, p: 1.0}]  # CutMix, then MixUp on the result
    mix: {switch: {cutmix: 0.5, mixup: 0.5}, alpha: 1.0, p: 0.5}  # one method per copy (timm's switch)

Each entry decides for every augmented copy whether it mixes (probability `p`, stream `mix`) and
with which partner of the block; its lambda (and box) are drawn from stream `mix-params`; entry k
after the first uses streams `mix/k` and `mix-params/k`, so adding an entry never changes the
draws of the ones before it. A `switch` entry first draws its method from `mix-params`.
Soft labels compose exactly: y <- lambda·y + (1 − lambda)·onehot(partner), entry after entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ConfigError
from .spec import close_matches, number

MIX_METHODS = ("cutmix", "mixup")
ENTRY_KEYS = ("method", "alpha", "p")
SWITCH_KEYS = ("switch", "alpha", "p")


@dataclass(frozen=True)
class MixEntry:
    """One mixing entry: lambda ~ Beta(alpha, alpha); `p` of the augmented copies are mixed."""

    method: str = "cutmix"  # cutmix | mixup, or "switch" (then `switch` holds the probabilities)
    alpha: float = 1.0
    p: float = 0.5
    switch: tuple[tuple[str, float], ...] = ()

    def to_spec(self) -> dict[str, Any]:
        if self.switch:
            return {"switch": dict(self.switch), "alpha": self.alpha, "p": self.p}
        return {"method": self.method, "alpha": self.alpha, "p": self.p}

    def draw_method(self, rng: np.random.Generator) -> str:
        """This copy's method: fixed, or drawn from the switch probabilities."""
        if not self.switch:
            return self.method
        names = [m for m, _ in self.switch]
        probs = np.asarray([w for _, w in self.switch], dtype=np.float64)
        return names[int(rng.choice(len(names), p=probs / probs.sum()))]


def streams(index: int) -> tuple[str, str]:
    """(whether/with whom, lambda/box) generator streams of entry `index`."""
    return ("mix", "mix-params") if index == 0 else (f"mix/{index}", f"mix-params/{index}")


@dataclass(frozen=True)
class Mixing:
    entries: tuple[MixEntry, ...]
    as_list: bool = False  # written as a list (the manifest records it as written)

    def to_spec(self) -> Any:
        specs = [e.to_spec() for e in self.entries]
        return specs if self.as_list else specs[0]


def _switch(value: Any, path: str) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(path, f"expected a mapping of method: probability, e.g. {{cutmix: 0.5, mixup: 0.5}}, got {value!r}")
    out = []
    for method, weight in value.items():
        if method not in MIX_METHODS:
            raise ConfigError(f"{path}.{method}", f"unknown method; accepted: {', '.join(MIX_METHODS)}"
                              f"{close_matches(str(method), MIX_METHODS)}")
        out.append((str(method), number(0, None)(weight, f"{path}.{method}")))
    if sum(w for _, w in out) <= 0:
        raise ConfigError(path, "the probabilities sum to 0; accepted: numbers >= 0 with a positive sum")
    return tuple(out)


def _entry(spec: Any, path: str) -> MixEntry:
    if not isinstance(spec, Mapping):
        raise ConfigError(path, f"expected a mapping with method, alpha, p (or switch, alpha, p); got {spec!r}")
    keys = SWITCH_KEYS if "switch" in spec else ENTRY_KEYS
    for key in spec:
        if key not in keys:
            raise ConfigError(f"{path}.{key}", f"unknown key; accepted: {', '.join(keys)}{close_matches(str(key), keys)}")
    alpha = number(0, None, lo_open=True)(spec.get("alpha", 1.0), f"{path}.alpha")
    p = number(0, 1)(spec.get("p", 0.5), f"{path}.p")
    if "switch" in spec:
        return MixEntry("switch", alpha, p, _switch(spec["switch"], f"{path}.switch"))
    method = spec.get("method", "cutmix")
    if method not in MIX_METHODS:
        raise ConfigError(f"{path}.method", f"{method!r} is not accepted; accepted: {', '.join(MIX_METHODS)}"
                          f"{close_matches(str(method), MIX_METHODS)}")
    return MixEntry(method, alpha, p)


def build_mixing(spec: Any, path: str = "mix") -> Mixing | None:
    """`mix:` as one mapping, a list of them, or a switch mapping; None/false = no mixing."""
    if spec is None or spec is False:
        return None
    if isinstance(spec, list):
        if not spec:
            raise ConfigError(path, "an empty list mixes nothing; leave mix: out instead")
        return Mixing(tuple(_entry(e, f"{path}[{i}]") for i, e in enumerate(spec)), as_list=True)
    return Mixing((_entry(spec, path),))
