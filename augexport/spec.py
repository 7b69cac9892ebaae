"""Validation helpers for pipeline specs: every check names the path, the value and what is accepted."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

Check = Callable[[Any, str], Any]


def close_matches(word: str, options: Iterable[str]) -> str:
    """`did you mean ...` suffix for unknown names (empty when nothing is close)."""
    near = difflib.get_close_matches(str(word), list(options), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(near)}?" if near else ""


def is_number(value: Any) -> bool:
    """A finite int or float (NaN and infinities are never meaningful parameters, nor are ints
    too large for a float)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _interval(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    """`[0, 1)`, `> 0`, `<= 5`: open-ended ranges are written as comparisons."""
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo}"
    if lo is None:
        return f"{'<' if hi_open else '<='} {hi}"
    return f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def _text_number_hint(value: Any) -> str:
    """A number given as text (quoted in YAML, a string in JSON): say so."""
    if not isinstance(value, str):
        return ""
    try:
        float(value)
    except ValueError:
        return ""
    return " (it is text: write the number without quotes)"


def number(lo: float | None = None, hi: float | None = None, *, integer: bool = False,
           lo_open: bool = False, hi_open: bool = False, allow_none: bool = False) -> Check:
    """A scalar in [lo, hi] (open ends on request); ints accepted for floats."""

    def check(value: Any, path: str) -> Any:
        if value is None and allow_none:
            return None
        kind = "an integer" if integer else "a number"
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(path, f"expected a finite number, got {value!r}")
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if integer and not is_int:
            raise ConfigError(path, f"expected {kind}, got {value!r}{_text_number_hint(value)}")
        if not is_int and not is_number(value):
            raise ConfigError(path, f"expected {kind}, got {value!r}{_text_number_hint(value)}")
        if is_int and not integer and not is_number(value):  # an int too large for a float
            raise ConfigError(path, f"{value!r} is out of range; accepted: {_interval(lo, hi, lo_open, hi_open)}")
        bad_lo = lo is not None and (value <= lo if lo_open else value < lo)
        bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
        if bad_lo or bad_hi:
            raise ConfigError(path, f"{value!r} is out of range; accepted: {_interval(lo, hi, lo_open, hi_open)}")
        return value if integer else float(value)

    return check


def boolean(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(path, f"expected true or false, got {value!r}")
    return value


def choice(*options: Any) -> Check:
    def check(value: Any, path: str) -> Any:
        if value not in options:
            accepted = ", ".join(str(o) for o in options)
            raise ConfigError(path, f"{value!r} is not accepted; accepted: {accepted}{close_matches(value, map(str, options))}")
        return value

    return check


def pair(lo: float | None = None, hi: float | None = None, *, ordered: bool = True, lo_open: bool = False) -> Check:
    """A 2-list [a, b] of numbers inside [lo, hi] (or (lo, hi] with lo_open)."""
    item = number(lo, hi, lo_open=lo_open)

    def check(value: Any, path: str) -> list[float]:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ConfigError(path, f"expected a 2-list [low, high], got {value!r}")
        out = [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if ordered and out[0] > out[1]:
            raise ConfigError(path, f"low {out[0]} is greater than high {out[1]}")
        return out

    return check


def one_of(*checks: Check, accepted: str) -> Check:
    """The first check that passes wins; otherwise the error lists `accepted`."""

    def check(value: Any, path: str) -> Any:
        for c in checks:
            try:
                return c(value, path)
            except ConfigError:
                continue
        raise ConfigError(path, f"{value!r} is not accepted; accepted: {accepted}")

    return check


@dataclass(frozen=True)
class Param:
    """One documented, validated parameter of a stage (drives validation and `augexport ops`)."""

    name: str
    kind: str
    default: Any
    doc: str
    check: Check


def validate_mapping(spec: Any, params: Iterable[Param], path: str) -> dict[str, Any]:
    """Validate a mapping against `params`: unknown keys are errors; defaults filled in."""
    params = list(params)
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise ConfigError(path, f"expected a mapping of parameters, got {type(spec).__name__} {spec!r}")
    names = [p.name for p in params]
    for key in spec:
        if key not in names:
            raise ConfigError(f"{path}.{key}", f"unknown key; accepted: {', '.join(names)}{close_matches(key, names)}")
    out: dict[str, Any] = {}
    for p in params:
        if p.name in spec:
            out[p.name] = p.check(spec[p.name], f"{path}.{p.name}")
        else:
            out[p.name] = p.default
    return out


def one_key_items(items: list[Any], path: str, what: str) -> list[tuple[str, str, Any]]:
    """`[{name: args}, "name", ...]` -> [(path of the item, name, args)]; the shape shared by the
    stage list, tf_image ops and imgaug steps. `what` names the item in errors ("stage", "op")."""
    out = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        if isinstance(item, str):
            item = {item: {}}
        if not isinstance(item, Mapping) or len(item) != 1:
            raise ConfigError(where, f"each {what} is a one-key mapping {{name: parameters}}, got {item!r}")
        (name, args), = item.items()
        out.append((where, str(name), args))
    return out
