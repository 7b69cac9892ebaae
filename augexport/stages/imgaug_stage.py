"""`imgaug` stage: imgaug 0.4.0 augmenters by class name, deterministic per example.

Spec: a list of steps `{ClassName: {kwargs}}` (or a bare `ClassName`) for any augmenter class in
`imgaug.augmenters`, and `pillike.X` for `imgaug.augmenters.pillike`. In argument values a YAML
list means an imgaug tuple (a 2-list is a uniform range), `{choice: [...]}` an imgaug list (pick
one). Meta augmenters take their children as `children:` (Sometimes: `then:` / `else:`, the blend
augmenters: `foreground:` / `background:`). `p:` wraps the step in `Sometimes(p)`, except for
classes whose own signature has `p` (Fliplr, Dropout, CoarseDropout, Sometimes, ...), which keep
imgaug's meaning. What imgaug would check only when an image draws it (string choices such as
Affine's `mode`: ENUMS; integers past its int32 draws) is checked when the spec is built.

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

import contextlib
import inspect
import math
import re
import types
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

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
#: imgaug draws integer parameters as int32 (a range's high end + 1 must fit too): larger integers
#: build but fail with an OverflowError on the first image, so the spec bounds them.
INT_LIMIT = 2**31 - 2


class Enum(NamedTuple):
    """The values a string-choice argument takes, and the forms imgaug accepts for it."""

    values: tuple[Any, ...]
    all_ok: bool = True  # `ALL` (imgaug's `ia.ALL`): a random value per image
    several: bool = True  # a list / `{choice: [...]}`: one of them per image


_AFFINE_MODES = ("constant", "edge", "symmetric", "reflect", "wrap")
_INTERPOLATIONS = ("nearest", "linear", "area", "cubic", 0, 1, 2, 3)  # and OpenCV's INTER_* numbers
_PAD_MODES = ("constant", "edge", "linear_ramp", "maximum", "mean", "median", "minimum", "reflect",
              "symmetric", "wrap")
# GRAY is left out: imgaug cannot convert from it (or back to RGB after a step in it).
_COLORSPACES = ("RGB", "BGR", "YCrCb", "HSV", "HLS", "Lab", "Luv", "YUV", "CIE")
#: String-choice arguments imgaug 0.4.0 checks only when it draws them (or silently reads as its
#: default, or rejects without naming the key): (classes, argument, rule), checked at build. A
#: rule covers the classes' subclasses (Affine: Rotate, ShearX, ...); None: every class.
ENUMS: tuple[tuple[tuple[str, ...] | None, str, Enum], ...] = (
    (("Affine", "PiecewiseAffine"), "mode", Enum(_AFFINE_MODES)),
    (("ElasticTransformation",), "mode", Enum(("constant", "nearest", "reflect", "wrap"))),
    (("Resize",), "interpolation", Enum(_INTERPOLATIONS)),
    (("Superpixels", "Voronoi", "_AbstractColorQuantization"), "interpolation", Enum(_INTERPOLATIONS, False, False)),
    (("BlendAlphaFrequencyNoise", "BlendAlphaSimplexNoise"), "upscale_method", Enum(_INTERPOLATIONS[:4])),
    (("BlendAlphaFrequencyNoise", "BlendAlphaSimplexNoise"), "aggregation_method", Enum(("min", "max", "avg"))),
    (None, "pad_mode", Enum(_PAD_MODES)),
    (None, "from_colorspace", Enum(_COLORSPACES, False, False)),
    (("WithColorspace",), "to_colorspace", Enum(_COLORSPACES, False, False)),
    (("_AbstractColorQuantization",), "to_colorspace", Enum(_COLORSPACES, False, True)),
)
#: skimage deprecations imgaug 0.4.0 triggers on every image (PiecewiseAffine's `estimate`,
#: Superpixels' `mean_intensity`): noise the user can do nothing about, so they are ignored
#: around the augment call of trees holding these classes, leaving every other warning alone.
SKIMAGE_NOISE = {"PiecewiseAffine": r"`estimate` is deprecated",
                 "Superpixels": r"`RegionProperties\.mean_intensity` is deprecated"}


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
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
        raise ConfigError(path, f"{value} is out of range; accepted: integers in [-{INT_LIMIT}, {INT_LIMIT}] "
                                "(imgaug draws them as 32-bit integers)")
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


def _accepted(rule: Enum, in_list: bool = False) -> str:
    shown = ", ".join(str(v) for v in rule.values)
    return shown + (" (or ALL: a random one per image)" if rule.all_ok and not in_list else "")


def _check_option(option: Any, rule: Enum, path: str, in_list: bool = False) -> None:
    # bools are ints to Python: True would pass as OpenCV's interpolation number 1
    if isinstance(option, (str, int)) and not isinstance(option, bool) and option in rule.values:
        return
    near = close_matches(option, [str(v) for v in rule.values]) if isinstance(option, str) else ""
    raise ConfigError(path, f"{_plain(option)!r} is not one of {_accepted(rule, in_list)}{near}")


def _check_enum(value: Any, rule: Enum, path: str) -> None:
    """A string-choice argument's spec value -> ConfigError unless imgaug can draw every option."""
    if value is None or (rule.all_ok and value == "ALL"):
        return  # null: imgaug's own meaning (e.g. to_colorspace: null = stay in from_colorspace)
    is_choice = isinstance(value, Mapping) and set(value) == {"choice"}
    if not is_choice and not isinstance(value, list):
        _check_option(value, rule, path)
        return
    if not rule.several:
        raise ConfigError(path, f"takes a single value, not a list; accepted: one of {_accepted(rule)}")
    options, where = (value["choice"], f"{path}.choice") if is_choice else (value, path)
    for i, option in enumerate(options):
        _check_option(option, rule, f"{where}[{i}]", in_list=True)
    if len({isinstance(option, str) for option in options}) > 1:  # imgaug's Choice makes 1 into '1'
        raise ConfigError(path, "mixes names and numbers, which imgaug cannot draw from one list; "
                                "accepted: names only or numbers only")


def _check_enums(cls: type, kwargs: Mapping[str, Any], where: str) -> None:
    """Check the step's string-choice arguments (ENUMS) that imgaug would check only when drawn."""
    names = {c.__name__ for c in cls.__mro__}
    for classes, arg, rule in ENUMS:
        if arg in kwargs and (classes is None or names.intersection(classes)):
            _check_enum(kwargs[arg], rule, f"{where}.{arg}")


def _builds(cls: type, args: dict[str, Any]) -> bool:
    try:
        cls(**args, seed=0)
    except Exception:  # any rejection: this form is not accepted
        return False
    return True


def _list_hint(cls: type, args: dict[str, Any], key: str, raw: Any) -> str:
    """Where imgaug rejected what the user wrote as a YAML list (an imgaug tuple; `got <class
    'tuple'>` names neither): the forms this argument does take, found by building the step."""
    if not isinstance(raw, list) or not raw:
        return ""
    value = args[key]
    forms = []
    if _builds(cls, {**args, key: value[0]}):
        forms.append(f"one value ({key}: {_plain(raw[0])!r})")
    ranges = len(raw) != 2 and _builds(cls, {**args, key: (value[0], value[-1])})
    if ranges:
        forms.append(f"a 2-list range {_plain([raw[0], raw[-1]])!r}")
    if _builds(cls, {**args, key: list(value)}):
        forms.append(f"{{choice: {_plain(raw)!r}}} to pick one of them per image")
    if not forms:
        return ""  # the list is not what imgaug objects to
    what = f"which takes exactly 2 entries, not {len(raw)}" if ranges else f"which {key} does not take"
    return (f"; in the spec a YAML list is an imgaug tuple (a 2-list [low, high] is a uniform range), "
            f"{what}; accepted: {' or '.join(forms)}")


def _rejected(exc: Exception, cls: type, args: dict[str, Any], kwargs: Mapping[str, Any], where: str) -> ConfigError:
    """imgaug's constructor error -> ConfigError at the argument its message names (if just one)."""
    text = str(exc)
    bad = [str(k) for k in kwargs if re.search(rf"(?<!\w){re.escape(str(k))}(?!\w)", text)]
    message = f"imgaug rejected the arguments: {type(exc).__name__}: {text}"
    if len(bad) != 1:
        return ConfigError(where, message)
    key = bad[0]
    hint = _list_hint(cls, args, key, kwargs[key]) if key in args else ""
    return ConfigError(f"{where}.{key}", message.rstrip(".") + hint if hint else message)


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
    _check_enums(cls, kwargs, where)
    try:
        aug = cls(**args, seed=0)
    except Exception as exc:  # imgaug reports bad values as assorted exceptions
        raise _rejected(exc, cls, args, kwargs, where) from None
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


def _skimage_noise(aug: Any) -> tuple[str, ...]:
    """The SKIMAGE_NOISE messages the tree's augmenters would print (none for most trees)."""
    names = {type(a).__name__ for a in [aug, *aug.get_all_children(flat=True)]}
    return tuple(message for name, message in SKIMAGE_NOISE.items() if name in names)


@contextlib.contextmanager
def _ignoring(messages: tuple[str, ...]) -> Iterator[None]:
    """FutureWarnings matching `messages` ignored for the block only (no global filter change)."""
    with warnings.catch_warnings():
        for message in messages:
            warnings.filterwarnings("ignore", message=message, category=FutureWarning)
        yield


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
        self._noise = _skimage_noise(augmenter)  # warning messages its augment calls ignore

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
        with _ignoring(self._noise) if self._noise else contextlib.nullcontext():
            out = self._compiled(image, params["seed"])
            if out is None:
                out = self._run_imgaug(image, params["seed"])
        if out is image:
            out = image.copy()
        return np.ascontiguousarray(out, dtype=np.uint8) if out.dtype != np.uint8 else out

    def render(self, rng: np.random.Generator, image: np.ndarray, apply_all: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
        """As Stage's; in the build-time dry run (apply_all) each leaf augmenter also runs on its own,
        so one that cannot work on this image (a colour augmenter with --channels 1) fails the build
        even where a Sometimes, SomeOf or OneOf would skip it on the probe's draw."""
        if apply_all:  # first, so a failure names the augmenter
            self._probe_leaves(image)
        return super().render(rng, image, apply_all)

    def _probe_leaves(self, image: np.ndarray) -> None:
        import copy

        tree = copy.deepcopy(self.augmenter)  # the stage's own augmenters keep their state
        leaves = [a for a in tree.get_all_children(flat=True) if not any(a.get_children_lists())]
        with _ignoring(self._noise) if self._noise else contextlib.nullcontext():
            for leaf in leaves:
                try:
                    leaf.seed_(0)
                    out = leaf.augment_image(image.copy())
                except Exception as exc:  # named by its class: the tree may hold many steps
                    raise ValueError(f"{type(leaf).__name__}: {type(exc).__name__}: {exc}") from exc
                if out.ndim != 3 or out.shape[2] != image.shape[2]:
                    raise ValueError(f"{type(leaf).__name__} returns {out.shape[-1] if out.ndim == 3 else 1} "
                                     f"channel(s) for a {image.shape[2]}-channel image")

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
