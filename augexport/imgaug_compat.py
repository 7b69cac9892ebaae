"""Make imgaug 0.4.0 run on numpy 2.2 / OpenCV 4.12 / current scipy and scikit-image.

imgaug 0.4.0 (2020) is abandoned: its metadata pins `opencv-python` (not headless) and an old
numpy, so it is installed with `pip install --no-deps -r requirements/imgaug.txt`, and its real
needs (scipy, scikit-image, imageio, shapely, opencv-python-headless pinned exactly because OpenCV
versions change output pixels) are ordinary dependencies in pyproject.toml.

On numpy 2 it fails at import and in a few augmenters. `import_imgaug()` sets the numpy aliases
before imgaug is first imported, then patches the augmenters (once) and returns `imgaug.augmenters`:

- numpy aliases removed in numpy 2 that imgaug uses: `np.sctypes` (imgaug.imgaug at import time)
  and `np.complex` (parameters.Power / FrequencyNoise). `np.bool` is back in numpy 2 as `np.bool_`.
- ElasticTransformation: its shift maps come out float64, so the remap grid `x + (-1) * dx` is
  float64, which `cv2.convertMaps` of OpenCV 4.12 rejects (assertion in imgwarp.cpp); the maps
  are cast to float32 before the remap.
- pillike.Autocontrast: imgaug hands `cutoff` to PIL's `ImageOps.autocontrast` as a numpy
  scalar; it is converted to a Python number, which every Pillow accepts. (With the Pillow 12.3
  installed here the numpy scalar also works; the conversion is kept as a cheap guard.)
- pillike.Affine (and imgaug's RandAugment, which uses it): the fill colour reaches Pillow as a
  tuple of three even for a one-channel image, which current Pillow refuses for an "L" image
  ("color must be int or single-element tuple"); a grey image gets the first value.
- `Augmenter.seed_` (not a numpy-2 break, an imgaug bug that breaks per-example determinism):
  child containers held as a single Sequential were not reseeded; see `_patch_seed`.
  `TreeSeeder` gives the same reseed (identical generator states) at a fraction of its cost, and
  `augment_one` the same result as `aug(image=...)` without the batch normalization round trip.
- Sweeping every augmenter class with default (or minimal) arguments (tests/test_imgaug.py)
  found no further breaks on numpy 2.2 / OpenCV 4.12 / scipy / scikit-image.
- Start-up: `imgaug.parameters` imports `scipy.stats` (~0.35 s, about 40% of importing imgaug,
  paid again by every worker process) for one parameter, TruncatedNormal; its keypoint and polygon
  modules import `scipy.spatial.distance` (~0.17 s with the `scipy.sparse` it pulls in) for
  keypoint distances and convex hulls, which image augmentation does not reach (skimage's
  transforms hold `scipy.spatial` for PiecewiseAffine's triangulation); its blur and geometric
  modules import `scipy.ndimage` (~0.13 s) for backends that uint8 images do not take (OpenCV
  blurs and warps them) and ElasticTransformation's spline orders; `imageio` (~0.04 s) reads
  only the quokka example images and JpegCompression's round trip. In augexport's worker
  processes (`defer_unused_imports()`, called at their start) all four are entered as stand-ins
  that import the real modules on first use, unless something loaded them already. Nowhere else:
  a stand-in in sys.modules is not the module everywhere (patching it, or importing one of its
  private submodules first, reaches a different object), which a process that only imports
  augexport as a library must not meet.

Nothing here touches imgaug's global RNG; augexport always passes explicit seeds.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import types
from typing import Any

import numpy as np

from .errors import UsageError

_PATCHED = False
_DEFER = False


def _numpy_aliases() -> None:
    if "sctypes" not in np.__dict__:
        setattr(np, "sctypes", {  # noqa: B010  (setattr: numpy 2 has no such attribute)
            "int": [np.int8, np.int16, np.int32, np.int64],
            "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
            "float": [np.float16, np.float32, np.float64, np.longdouble],
            "complex": [np.complex64, np.complex128, np.clongdouble],
            "others": [bool, object, bytes, str, np.void],
        })
    if "complex" not in np.__dict__:
        setattr(np, "complex", complex)  # noqa: B010


def _patch_elastic(geometric: types.ModuleType) -> None:
    cls = geometric.ElasticTransformation
    original = cls._map_coordinates.__func__

    def _map_coordinates(klass: type, image: np.ndarray, dx: np.ndarray, dy: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        return original(klass, image, np.asarray(dx, np.float32), np.asarray(dy, np.float32), *args, **kwargs)

    cls._map_coordinates = classmethod(_map_coordinates)


def _patch_autocontrast(pillike: types.ModuleType) -> None:
    original = pillike._autocontrast_pil

    def _autocontrast_pil(image: np.ndarray, cutoff: Any, ignore: Any) -> np.ndarray:
        if isinstance(cutoff, np.ndarray) or isinstance(cutoff, np.generic):
            cutoff = np.asarray(cutoff).reshape(-1)[0].item()
        return original(image, cutoff, ignore)

    pillike._autocontrast_pil = _autocontrast_pil


def _patch_pillike_fill(pillike: types.ModuleType) -> None:
    original = pillike.warp_affine

    @functools.wraps(original)
    def warp_affine(image: np.ndarray, *args: Any, fillcolor: Any = None, **kwargs: Any) -> np.ndarray:
        grey = image.ndim == 2 or image.shape[-1] == 1
        if grey and isinstance(fillcolor, (tuple, list, np.ndarray)) and len(fillcolor) > 0:
            fillcolor = int(fillcolor[0])
        return original(image, *args, fillcolor=fillcolor, **kwargs)

    pillike.warp_affine = warp_affine


def _patch_seed(meta: types.ModuleType, iarandom: types.ModuleType) -> None:
    """`Augmenter.seed_` that also reseeds child containers returned as one augmenter.

    WithBrightnessChannels, WithColorspace, WithHueAndSaturation, Sometimes, ... return
    `[self.children]` where `self.children` is a Sequential: the original `seed_` reseeds the
    Sequential's members but not the Sequential itself, so its own RNG (random_order, e.g. inside
    MultiplyAndAddToBrightness) keeps advancing across calls and results depend on call history.
    Identical to the original for every augmenter whose child lists are plain lists or itself.
    """
    augmenter = meta.Augmenter

    def seed_(self: Any, entropy: Any = None, deterministic_too: bool = False) -> Any:
        random_state = iarandom.RNG.create_pseudo_random_() if entropy is None else iarandom.RNG(entropy)
        if not self.deterministic or deterministic_too:
            self.random_state = random_state.copy()
        for lst in self.get_children_lists():
            if isinstance(lst, augmenter) and lst is not self:
                lst.seed_(entropy=random_state.derive_rng_(), deterministic_too=deterministic_too)
                continue
            for aug in lst:
                aug.seed_(entropy=random_state.derive_rng_(), deterministic_too=deterministic_too)
        return self

    augmenter.seed_ = seed_


def _seed_plan(aug: Any, augmenter: type) -> tuple[Any, bool, tuple]:
    """(augmenter, whether seed_ gives it a new RNG, children in seed_'s order)."""
    children: list[tuple] = []
    for lst in aug.get_children_lists():
        if isinstance(lst, augmenter) and lst is not aug:
            children.append(_seed_plan(lst, augmenter))
        else:
            children.extend(_seed_plan(child, augmenter) for child in lst)
    return aug, not aug.deterministic, tuple(children)


class TreeSeeder:
    """Reseeds an augmenter tree exactly as `root.seed_(seed)` (patched below) does, generator
    state for generator state, in about half its time: `TreeSeeder(root)(seed)`.

    seed_ gives a node a deep copy of a fresh generator and then draws each child's seed from that
    generator (two int32s, the last one kept) and spawns the child's generator from it through a
    SeedSequence. Two generators built from one SeedSequence are equal, so here the copy is a
    second construction; the walk over the tree is planned once; imgaug's RNG wrapper is filled in
    directly (its constructor re-reads and re-writes the state of a generator that is fresh)."""

    def __init__(self, root: Any) -> None:
        from imgaug.augmenters.meta import Augmenter

        self.plan = _seed_plan(root, Augmenter)

    def __call__(self, seed: int) -> None:
        self._reseed(self.plan, np.random.SeedSequence(seed))

    def reseed(self, seq: np.random.SeedSequence) -> None:
        """The same from the SeedSequence `seed_` would derive for the root's generator."""
        self._reseed(self.plan, seq)

    def _reseed(self, node: tuple[Any, bool, tuple], seq: np.random.SeedSequence) -> None:
        import imgaug.random as iarandom

        aug, own, children = node
        if own:
            rng = iarandom.RNG.__new__(iarandom.RNG)
            rng.generator, rng._is_new_rng_style = np.random.Generator(np.random.SFC64(seq)), True
            aug.random_state = rng
        if children:
            parent = np.random.Generator(np.random.SFC64(seq))
            for child in children:
                child_seed = parent.integers(iarandom.SEED_MIN_VALUE, iarandom.SEED_MAX_VALUE, dtype=np.int32,
                                             size=2)[-1]
                # = SeedSequence(child_seed).spawn(1)[0]
                self._reseed(child, np.random.SeedSequence(child_seed, spawn_key=(0,)))


def augment_one(aug: Any, image: np.ndarray, copy: bool = True) -> np.ndarray:
    """`aug(image=image)` without its UnnormalizedBatch round trip: the batch imgaug would build
    (a list holding a copy of the image) handed to `augment_batch_` directly. `copy=False` for an
    image the caller owns, which imgaug may then change in place."""
    from imgaug.augmentables.batches import _BatchInAugmentation

    return aug.augment_batch_(_BatchInAugmentation(images=[image.copy() if copy else image])).images[0]


def _patch_augmenters() -> None:
    import imgaug.random as iarandom
    from imgaug.augmenters import geometric, meta, pillike

    _patch_elastic(geometric)
    _patch_autocontrast(pillike)
    _patch_pillike_fill(pillike)
    _patch_seed(meta, iarandom)


#: Modules imgaug imports at start-up for features augexport's images rarely use, put off until
#: first use: the package, and the submodules of it that imgaug imports by name.
DEFERRED = {"scipy.stats": (), "scipy.spatial": ("distance",), "scipy.ndimage": (), "imageio": ()}


class _OnFirstUse(types.ModuleType):
    """A stand-in for a module in sys.modules: the first attribute read of it (or of a stand-in for
    one of its package's submodules) imports the real package, which then replaces the stand-ins
    (in sys.modules and on the parent package). A reference to a stand-in kept by a module that
    imported it meanwhile (`from scipy import spatial`) keeps working: each read goes to the real
    module."""

    def __getattr__(self, attr: str) -> Any:
        import sys

        package = self.__dict__["_deferred_package"]
        for name in (package, *(f"{package}.{sub}" for sub in DEFERRED[package])):
            if isinstance(sys.modules.get(name), _OnFirstUse):
                del sys.modules[name]
        real = importlib.import_module(package)
        parent, _, child = package.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, real)
        return getattr(importlib.import_module(self.__name__), attr)


def _stand_in(name: str, package: str, spec: Any) -> _OnFirstUse:
    module = _OnFirstUse(name)
    module._deferred_package = package  # type: ignore[attr-defined]
    module.__spec__ = spec  # importlib.util.find_spec(name) answers as for the real module
    return module


def _defer_import(package: str) -> None:
    import sys

    if package in sys.modules:
        return
    spec = importlib.util.find_spec(package)  # imports the parent package, not this one
    if spec is None:
        return
    parent, _, child = package.rpartition(".")
    sys.modules[package] = stand_in = _stand_in(package, package, spec)
    if parent:
        setattr(importlib.import_module(parent), child, stand_in)
    for sub in DEFERRED[package]:
        name = f"{package}.{sub}"
        sub_spec = importlib.machinery.PathFinder.find_spec(name, spec.submodule_search_locations)
        sys.modules[name] = sub_in = _stand_in(name, package, sub_spec)
        setattr(stand_in, sub, sub_in)  # a plain attribute: `scipy.spatial.distance` is the stand-in


def defer_unused_imports() -> None:
    """In this process, let `import_imgaug` put off the modules in DEFERRED (worker start-up)."""
    global _DEFER
    _DEFER = True


def import_imgaug() -> types.ModuleType:
    """Patch (once) and import imgaug; returns `imgaug.augmenters`."""
    global _PATCHED
    if importlib.util.find_spec("imgaug") is None:
        raise UsageError("the imgaug stage needs imgaug, which is not installed: "
                         "pip install --no-deps -r requirements/imgaug.txt (see README, Installing)")
    if not _PATCHED:
        _numpy_aliases()
        for package in DEFERRED if _DEFER else ():
            _defer_import(package)
        _patch_augmenters()
        _PATCHED = True
    import imgaug.augmenters as iaa

    return iaa
