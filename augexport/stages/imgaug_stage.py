"""`imgaug` stage: imgaug 0.4.0 augmenters by class name, deterministic per example.

Spec: a list of steps `{ClassName: {kwargs}}` (or a bare `ClassName`) for any augmenter class in
`imgaug.augmenters`, and `pillike.X` for `imgaug.augmenters.pillike`. In argument values a YAML
list means an imgaug tuple (a 2-list is a uniform range), `{choice: [...]}` an imgaug list (pick
one). Meta augmenters take their children as `children:` (Sometimes: `then:` / `else:`, the blend
augmenters: `foreground:` / `background:`). `p:` wraps the step in `Sometimes(p)`, except for
classes whose own signature has `p` (Fliplr, Dropout, CoarseDropout, Sometimes, ...), which keep
imgaug's meaning.

Determinism: `sample` draws one imgaug seed per example from the example generator; `apply`
reseeds the whole augmenter tree with it (as `Augmenter.seed_(seed)` does, which derives every
child's RNG from it; `imgaug_compat.TreeSeeder` does the same faster) and augments that one image.
The result depends only on the seed, never on what ran before in the process, and imgaug's global
RNG is never used; it equals `run_seeded`, imgaug's own way. The common augmenters (Sequential,
Sometimes, flips, Affine, Multiply, GaussianBlur) run compiled to the same draws and kernels
without imgaug's per-call machinery (`imgaug_compiled`), byte for byte the same.

No batched path: imgaug draws a batch's parameters with one RNG as arrays of length N
(`_draw_samples(nb_rows, random_state)`), so an image's result depends on its batch and its
position in it. Per-example seeds therefore require one augment call per image (docs/performance.md
gives the cost).
"""

from __future__ import annotations

import inspect
import math
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..registry import Stage, register
from ..spec import close_matches

#: Spec keys that hold lists of steps, and the imgaug argument each one fills.
NESTED_KEYS = {"children": "children", "then": "then_list", "else": "else_list",
               "foreground": "foreground", "background": "background"}
#: Arguments augexport owns (the seed) or that would make results depend on global state.
RESERVED_ARGS = ("seed", "name", "random_state", "deterministic")
#: Classes the spec refuses, and why (they need Python objects or do I/O, not image augmentation).
EXCLUDED = {
    "Augmenter": "abstract base class",
    "Lambda": "needs Python callables",
    "AssertLambda": "needs Python callables",
    "Voronoi": "needs a Python points-sampler object (use UniformVoronoi, RegularGridVoronoi, ...)",
    "BlendAlphaMask": "needs a Python mask-generator object (use the BlendAlpha* variants)",
    "SaveDebugImageEveryNBatches": "writes files; not an augmentation",
    "BlendAlphaBoundingBoxes": "needs bounding boxes; augexport augments images only",
    "BlendAlphaSegMapClassIds": "needs segmentation maps; augexport augments images only",
}


def _iaa() -> types.ModuleType:
    from ..imgaug_compat import import_imgaug

    return import_imgaug()


def augmenter_classes() -> dict[str, type]:
    """Every class name the spec accepts -> its imgaug class (registry-driven: read from imgaug)."""
    iaa = _iaa()
    base = iaa.meta.Augmenter
    out: dict[str, type] = {}
    for prefix, module in (("", iaa), ("pillike.", iaa.pillike)):
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, base) and not name.startswith("_")
                    and name not in EXCLUDED):
                out[prefix + name] = obj
    return out


def _init_params(cls: type) -> dict[str, inspect.Parameter]:
    sig = inspect.signature(cls.__init__)
    return {n: p for n, p in sig.parameters.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def _convert_value(value: Any, path: str) -> Any:
    """YAML -> imgaug argument: list -> tuple (range), {choice: [...]} -> list, mappings recurse."""
    if isinstance(value, Mapping):
        if set(value) == {"choice"}:
            options = value["choice"]
            if not isinstance(options, list) or not options:
                raise ConfigError(f"{path}.choice", f"expected a non-empty list of options, got {options!r}")
            return [_convert_value(v, f"{path}.choice[{i}]") for i, v in enumerate(options)]
        return {str(k): _convert_value(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_convert_value(v, f"{path}[{i}]") for i, v in enumerate(value))
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(path, f"{value!r} is not accepted; accepted: finite numbers")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ConfigError(path, f"unsupported value {value!r}; accepted: numbers, strings, booleans, null, lists, {{choice: [...]}}")


def _step_parts(step: Any, path: str) -> tuple[str, dict[str, Any]]:
    if isinstance(step, str):
        return step, {}
    if not isinstance(step, Mapping) or len(step) != 1:
        raise ConfigError(path, f"each imgaug step is a one-key mapping {{ClassName: {{arguments}}}}, got {step!r}")
    (name, kwargs), = step.items()
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"{path}.{name}", f"expected a mapping of arguments, got {kwargs!r}")
    return str(name), dict(kwargs)


def build_step(step: Any, path: str, classes: dict[str, type]) -> Any:
    """One spec step -> a constructed imgaug augmenter (errors name the path and close matches)."""
    iaa = _iaa()
    name, kwargs = _step_parts(step, path)
    if name not in classes:
        why = f" ({EXCLUDED[name]})" if name in EXCLUDED else ""
        raise ConfigError(path, f"unknown imgaug augmenter {name!r}{why}{close_matches(name, classes) or '; see augexport ops'}")
    cls = classes[name]
    where = f"{path}.{name}"
    params = _init_params(cls)
    accepted = _spec_arg_names(cls)
    wrap_p = "p" not in params
    args: dict[str, Any] = {}
    for key, value in kwargs.items():
        key = str(key)
        if key == "p" and wrap_p:
            continue
        if key in RESERVED_ARGS:
            raise ConfigError(f"{where}.{key}", "is set by augexport (per-example seeds); remove it")
        if key not in accepted:
            raise ConfigError(f"{where}.{key}", f"unknown argument; accepted: {', '.join(accepted)}{close_matches(key, accepted)}")
        if key in NESTED_KEYS:
            steps = value if isinstance(value, list) else [value]
            args[NESTED_KEYS[key]] = [build_step(s, f"{where}.{key}[{i}]", classes) for i, s in enumerate(steps)]
        else:
            args[key] = _convert_value(value, f"{where}.{key}")
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in args]
    if missing:
        shown = [next((k for k, v in NESTED_KEYS.items() if v == n), n) for n in missing]
        raise ConfigError(where, f"missing required argument(s): {', '.join(shown)}")
    try:
        aug = cls(**args, seed=0)
    except Exception as exc:  # imgaug reports bad values as assorted exceptions
        bad = [k for k in kwargs if str(k) in str(exc)]
        raise ConfigError(f"{where}.{bad[0]}" if len(bad) == 1 else where,
                          f"imgaug rejected the arguments: {type(exc).__name__}: {exc}") from None
    if wrap_p and "p" in kwargs:
        p = kwargs["p"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ConfigError(f"{where}.p", f"{p!r} is out of range; accepted: a number in [0, 1]")
        aug = iaa.Sometimes(float(p), aug, seed=0)
    return aug


def build_sequence(spec: Any, path: str) -> Any:
    """The whole stage spec -> `iaa.Sequential` of its steps (constructed once: validates it)."""
    if not isinstance(spec, list):
        raise ConfigError(path, f"expected a list of steps like [{{Fliplr: {{p: 0.5}}}}], got {type(spec).__name__}")
    iaa = _iaa()
    classes = augmenter_classes()
    return iaa.Sequential([build_step(s, f"{path}[{i}]", classes) for i, s in enumerate(spec)], seed=0)


def _plain(spec: Any) -> Any:
    """A JSON-able deep copy of the user's spec (what the manifest records)."""
    if isinstance(spec, Mapping):
        return {str(k): _plain(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return [_plain(v) for v in spec]
    return spec


def run_seeded(aug: Any, image: np.ndarray, seed: int) -> np.ndarray:
    """imgaug with an explicit seed: reseed the whole tree, then augment one image."""
    aug.seed_(seed)
    return aug(image=image)


@register
class Imgaug(Stage):
    name = "imgaug"
    doc = ("imgaug 0.4.0 augmenters by class name: [{ClassName: {args}}]; 2-list = range, "
           "{choice: [...]} = pick one, p: wraps in Sometimes(p), meta augmenters take children.")

    def __init__(self, config: Any, augmenter: Any) -> None:
        super().__init__(config)
        self.augmenter = augmenter
        self._reseed: Any = None  # imgaug_compat.TreeSeeder, planned on first use
        self._compiled: Any = None  # imgaug_compiled.compile_tree's run, built on first use

    @classmethod
    def from_spec(cls, spec: Any, path: str) -> Imgaug:
        return cls(_plain(spec), build_sequence(spec, path))

    def to_spec(self) -> Any:
        return _plain(self.config)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, Any]:
        return {"seed": int(rng.integers(0, 2**63 - 1))}

    def apply(self, image: np.ndarray, params: dict[str, Any]) -> np.ndarray:
        from ..imgaug_compiled import compile_tree

        if self._compiled is None:
            self._compiled = compile_tree(self.augmenter)
        out = self._compiled(image, params["seed"])
        if out is None:
            out = self._run_imgaug(image, params["seed"])
        if out is image:
            out = image.copy()
        return np.ascontiguousarray(out, dtype=np.uint8) if out.dtype != np.uint8 else out

    def __getstate__(self) -> dict[str, Any]:
        """Picklable after use: the compiled run (closures) is rebuilt where it is next needed."""
        return {**self.__dict__, "_compiled": None}

    def _run_imgaug(self, image: np.ndarray, seed: int) -> np.ndarray:
        """The whole tree through imgaug: what the compiled run equals, and its fallback."""
        from ..imgaug_compat import TreeSeeder, augment_one

        if self._reseed is None:
            self._reseed = TreeSeeder(self.augmenter)
        self._reseed(seed)
        return augment_one(self.augmenter, image)

    @classmethod
    def ops_rows(cls) -> list[tuple[str, str, str, str]]:
        return [
            ("", "<ClassName>", "mapping", "any augmenter in imgaug.augmenters (or pillike.<Name>) with its own arguments"),
            ("", "p", "float in [0, 1]", "wraps the step in Sometimes(p) unless the class has its own p"),
            ("", "children / then / else", "list of steps", "children of meta augmenters (Sequential, SomeOf, OneOf, Sometimes, ...)"),
            ("", "[a, b]", "range", "imgaug tuple: uniform range; {choice: [...]} = imgaug list"),
        ] + [("", name, "augmenter", "args: " + ", ".join(_spec_arg_names(cls)))
             for name, cls in sorted(augmenter_classes().items())]


def _spec_arg_names(cls: type) -> list[str]:
    """The argument names a step of `cls` accepts in the spec (nested keys by their spec name)."""
    names = [n for n in _init_params(cls) if n not in RESERVED_ARGS]
    spec_name = {v: k for k, v in NESTED_KEYS.items()}
    return [spec_name.get(n, n) for n in names] + ([] if "p" in names else ["p"])
