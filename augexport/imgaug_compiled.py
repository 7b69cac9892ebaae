"""imgaug trees compiled to plain calls: the same draws and the same kernels as imgaug 0.4.0, for
one image and one seed, without imgaug's per-call machinery.

Per image the `imgaug` stage reseeds the whole augmenter tree (`imgaug_compat.TreeSeeder`) and
runs it through `augment_batch_`: batch objects, hooks and propagation contexts, a wrapper object
and a generator-state round trip for every parameter draw, dtype gates around every kernel.
`compile_tree(root)` turns the tree into one function `run(image, seed)` that derives each node's
generator exactly as the reseed does (the node's SeedSequence -> SFC64), draws each parameter
exactly as its `draw_samples` does (`advance_` included) and calls imgaug's own kernel functions
(`fliplr`, `multiply_scalar`, `blur_gaussian_`, Affine's `to_matrix` and `_warp_affine_arr`).
A node of any other kind - another augmenter, a parameter class not mirrored here, a subclass
that overrides a mirrored method, a deterministic node - is reseeded from its own SeedSequence
and run by imgaug itself, inside the compiled tree: its result depends only on that seed, so the
whole still equals imgaug's. tests/test_imgaug_compiled.py holds the two together byte for byte.

What is mirrored, per node (imgaug 0.4.0, `_augment_batch_` for a batch of one image):
- Sequential: children in order, or in a `permutation` (random_order) from its own generator;
- Sometimes: one draw of `p`, then the then- or else-list;
- Fliplr / Flipud: one draw of `p`, flip when >= 0.5 (Flipud as a `[::-1]` view, as imgaug does);
- Multiply: `per_channel`, then `mul`;
- GaussianBlur: one draw of `sigma`, blurred in place;
- Affine and its subclasses that keep its sampling and warping (ScaleX, Rotate, ShearX, ...):
  scale, translate, rotate, shear, cval, mode, order in turn, the matrix from imgaug's
  `_AffineSamplingResult`, no warp for an identity matrix.
Multiply and Affine draw through `random_state.duplicate(n)`, which hands out the node's own
generator n times (not copies), so their parameters draw one after another from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import fused_warp

Draw = Callable[[Any, tuple[int, ...]], np.ndarray]
Node = Callable[[np.ndarray, np.random.SeedSequence], np.ndarray]


class Unsupported(Exception):
    """The tree holds something this module does not mirror; imgaug runs it instead."""


def _fresh(seq: np.random.SeedSequence) -> np.random.Generator:
    return np.random.Generator(np.random.SFC64(seq))


def _child_seqs(seq: np.random.SeedSequence, count: int) -> list[np.random.SeedSequence]:
    """The children's SeedSequences, as `seed_` derives them from the node's own seed."""
    import imgaug.random as iarandom

    # seed_ draws two int32s per child and keeps the second; one call drawing them all takes the
    # same values from the generator (its cached 32-bit half carries over between calls)
    seeds = _fresh(seq).integers(iarandom.SEED_MIN_VALUE, iarandom.SEED_MAX_VALUE, dtype=np.int32,
                                 size=2 * count)[1::2]
    return [np.random.SeedSequence(seed, spawn_key=(0,)) for seed in seeds]


# ---------------------------------------------------------------- parameters

Advance = Callable[[np.random.Generator], None]


def advance_exact(gen: np.random.Generator) -> None:
    """`random_state.advance_()`, which ends every `draw_samples`: drop the cached 32-bit half of
    the generator's state, then draw one double."""
    import imgaug.random as iarandom

    iarandom.advance_generator_(gen)


def advance_double(gen: np.random.Generator) -> None:
    """The same for a generator whose cached 32-bit half is known to be empty: a new generator
    that has only drawn doubles (uniform, binomial, random) never fills it."""
    gen.random()


def draws_32_bits(param: Any) -> bool:
    """Whether drawing `param` may take 32-bit integers (and so fill the cached half)."""
    import imgaug.parameters as iap

    if type(param) in (iap.DiscreteUniform, iap.Choice):
        return True
    return any(draws_32_bits(getattr(param, name)) for name in ("a", "b", "p")
               if isinstance(getattr(param, name, None), iap.StochasticParameter))


def _deterministic(param: Any, advance: Advance) -> Draw:
    import imgaug.imgaug as ia

    value = param.value
    kwargs: dict[str, Any] = {}
    if ia.is_single_integer(value):
        kwargs = {"dtype": np.int32}
    elif ia.is_single_float(value):
        kwargs = {"dtype": np.float32}

    def draw(gen: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        out = np.full(size, value, **kwargs)
        advance(gen)
        return out

    return draw


def _two_bounds(first_param: Any, second_param: Any, advance: Advance,
                sample: Callable[[Any, Any, Any, tuple[int, ...]], np.ndarray]) -> Draw:
    """Uniform, DiscreteUniform: two scalar draws (the bounds), then the distribution's call."""
    first, second = compile_param(first_param, advance), compile_param(second_param, advance)

    def draw(gen: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        a = first(gen, (1,))[0]
        b = second(gen, (1,))[0]
        out = sample(gen, a, b, size)
        advance(gen)
        return out

    return draw


def _uniform(gen: np.random.Generator, a: Any, b: Any, size: tuple[int, ...]) -> np.ndarray:
    if a > b:
        a, b = b, a
    elif a == b:
        return np.full(size, a, dtype=np.float32)
    return gen.uniform(low=a, high=b, size=size).astype(np.float32)


def _discrete_uniform(gen: np.random.Generator, a: Any, b: Any, size: tuple[int, ...]) -> np.ndarray:
    if a > b:
        a, b = b, a
    elif a == b:
        return np.full(size, a, dtype=np.int32)
    return gen.integers(low=a, high=b + 1, size=size, dtype=np.int32, endpoint=False)


def _binomial(param: Any, advance: Advance) -> Draw:
    chance = compile_param(param.p, advance)

    def draw(gen: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        p = chance(gen, (1,))[0]
        if not 0 <= p <= 1.0:
            raise Unsupported("Binomial p outside [0, 1]")
        out = gen.binomial(n=1, p=p, size=size).astype(np.int32)
        advance(gen)
        return out

    return draw


def _choice(param: Any, advance: Advance) -> Draw:
    import imgaug.parameters as iap

    if any(isinstance(option, iap.StochasticParameter) for option in param.a):
        raise Unsupported("Choice over parameters")
    options, replace, weights = param.a, param.replace, param.p

    def draw(gen: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
        samples = gen.choice(a=options, size=size, replace=replace, p=weights)
        if samples.dtype.itemsize * 8 > 32:
            narrow = {"i": np.int32, "u": np.uint32, "f": np.float32}.get(samples.dtype.kind)
            if narrow is not None:
                samples = samples.astype(narrow)
        advance(gen)
        return samples

    return draw


def compile_param(param: Any, advance: Advance = advance_exact) -> Draw:
    """`draw(gen, size)` equal to `param.draw_samples(size, random_state=gen)`; raises Unsupported.
    `advance` may be `advance_double` where the caller knows the generator's cached half is empty."""
    import imgaug.parameters as iap

    kind = type(param)
    if kind is iap.Deterministic:
        return _deterministic(param, advance)
    if kind is iap.Binomial:
        return _binomial(param, advance)
    if kind is iap.Choice:
        return _choice(param, advance)
    if kind is iap.Uniform:
        return _two_bounds(param.a, param.b, advance, _uniform)
    if kind is iap.DiscreteUniform:
        return _two_bounds(param.a, param.b, advance, _discrete_uniform)
    raise Unsupported(f"parameter {kind.__name__}")


def compile_params(*params: Any) -> list[Draw]:
    """Parameters one node draws in turn from its own new generator."""
    advance = advance_exact if any(map(draws_32_bits, params)) else advance_double
    return [compile_param(param, advance) for param in params]


# ---------------------------------------------------------------- nodes


def _same_method(aug: Any, base: type, *names: str) -> bool:
    return all(getattr(type(aug), name) is getattr(base, name) for name in names)


def _sequential(aug: Any) -> Node:
    children = [compile_node(child) for child in aug]
    random_order, count = aug.random_order, len(children)

    def run(image: np.ndarray, seq: np.random.SeedSequence) -> np.ndarray:
        seqs = _child_seqs(seq, count)
        order = _fresh(seq).permutation(count) if random_order else range(count)
        for index in order:
            image = children[index](image, seqs[index])
        return image

    return run


def _sometimes(aug: Any) -> Node:
    lists = aug.get_children_lists()
    nodes = [compile_node(lst) if len(lst) > 0 else None for lst in lists]
    then_at = 0 if aug.then_list is not None else None
    else_at = None if aug.else_list is None else len(lists) - 1
    chance, = compile_params(aug.p)

    def run(image: np.ndarray, seq: np.random.SeedSequence) -> np.ndarray:
        sample = chance(_fresh(seq), (1,))[0]
        at = then_at if sample == 1 else else_at if sample == 0 else None
        if at is None or nodes[at] is None:
            return image
        return nodes[at](image, _child_seqs(seq, len(lists))[at])

    return run


def _flip(aug: Any, horizontal: bool) -> Node:
    from imgaug.augmenters import flip

    chance, = compile_params(aug.p)

    def run(image: np.ndarray, seq: np.random.SeedSequence) -> np.ndarray:
        if chance(_fresh(seq), (1,))[0] >= 0.5:
            image = flip.fliplr(image) if horizontal else image[::-1, ...]
        return image

    return run


def _multiply(aug: Any) -> Node:
    from imgaug.augmenters import arithmetic, meta

    per_channel, mul = compile_params(aug.per_channel, aug.mul)

    def run(image: np.ndarray, seq: np.random.SeedSequence) -> np.ndarray:
        gen = _fresh(seq)
        channels = meta.estimate_max_number_of_channels([image])
        per = per_channel(gen, (1,))[0]
        factors = mul(gen, (1, channels))[0]
        if per > 0.5:
            factor: Any = factors[0:image.shape[2]]
        else:
            factor = factors[0] if factors.size > 0 else []
        if image.dtype == np.uint8 and image.size > 0:  # what multiply_scalar calls after its gate
            return arithmetic._multiply_scalar_to_uint8(image, factor)
        return arithmetic.multiply_scalar(image, factor)

    return run


def _gaussian_blur(aug: Any) -> Node:
    from imgaug.augmenters import blur

    (sigma,), eps = compile_params(aug.sigma), aug.eps

    def run(image: np.ndarray, seq: np.random.SeedSequence) -> np.ndarray:
        sig = sigma(_fresh(seq), (1,))[0]
        image[...] = blur.blur_gaussian_(image, sigma=sig, eps=eps)
        return image

    return run


def _affine_draws(aug: Any) -> Callable[[np.random.SeedSequence], Any]:
    """`Affine._draw_samples(1, random_state)`: every parameter in turn from the node's generator
    (its `duplicate(12)` hands out the same generator twelve times)."""
    from imgaug.augmenters import geometric

    scales = aug.scale if isinstance(aug.scale, tuple) else (aug.scale,)
    moves = aug.translate[:2] if aug.translate[1] is not None else aug.translate[:1]
    shear_kind = aug._shear_param_type
    shears = aug.shear if shear_kind == "dict" else (aug.shear,)
    draws = compile_params(*scales, *moves, aug.rotate, *shears, aug.cval, aug.mode, aug.order)
    translate_mode = aug.translate[2]

    def pair(samples: list[np.ndarray], single_as_zeros: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if len(samples) == 2:
            return samples[0], samples[1]
        return samples[0], np.zeros_like(samples[0]) if single_as_zeros else samples[0]

    def sample(seq: np.random.SeedSequence) -> Any:
        gen = _fresh(seq)
        drawn = [draw(gen, (1, 3) if at == len(draws) - 3 else (1,)) for at, draw in enumerate(draws)]
        i, j = len(scales), len(scales) + len(moves)
        return geometric._AffineSamplingResult(
            scale=pair(drawn[:i]), translate=pair(drawn[i:j]), translate_mode=translate_mode,
            rotate=drawn[j], shear=pair(drawn[j + 1:j + 1 + len(shears)], shear_kind == "single-number"),
            cval=drawn[-3], mode=drawn[-2], order=drawn[-1])

    return sample


def _affine(aug: Any) -> Node:
    from imgaug.augmenters import geometric

    draws, fit_output, backend = _affine_draws(aug), aug.fit_output, aug.backend

    def run(image: np.ndarray, seq: np.random.SeedSequence) -> np.ndarray:
        samples = draws(seq)
        matrix, output_shape = samples.to_matrix(0, image.shape, image.shape, fit_output)
        if geometric._is_identity_matrix(matrix):
            return image
        order, mode, cval = samples.order[0], samples.mode[0], samples.cval[0]
        if backend in ("auto", "cv2") and order in (0, 1, 3) and image.dtype == np.uint8 \
                and image.ndim == 3 and 0 < image.shape[2] <= 3 and image.size > 0:
            return _warp_uint8_cv2(image, matrix, order, mode, cval, output_shape)
        return geometric._warp_affine_arr(image, matrix, order=order, mode=mode, cval=cval,
                                          output_shape=output_shape, backend=backend)

    return run


# cv2.BORDER_CONSTANT and cv2.BORDER_REPLICATE (OpenCV is imported lazily) -> the fused kernel's
_FUSED_BORDERS = {0: fused_warp.CONSTANT, 1: fused_warp.REPLICATE}


def _warp_uint8_cv2(image: np.ndarray, matrix: Any, order: Any, mode: Any, cval: Any,
                    output_shape: tuple[int, ...]) -> np.ndarray:
    """What `_warp_affine_arr` -> `_warp_affine_arr_cv2` do for a uint8 image of 1-3 channels and
    an order OpenCV has (their dtype gates pass; four and more channels warp one by one there)."""
    import cv2
    from imgaug import imgaug as ia
    from imgaug.augmenters import geometric

    dsize = (int(np.round(output_shape[1])), int(np.round(output_shape[0])))
    flags = geometric._AFFINE_INTERPOLATION_ORDER_SKIMAGE_TO_CV2.get(order, order)
    border = geometric._AFFINE_MODE_SKIMAGE_TO_CV2.get(mode, mode)
    border_value = tuple(int(v) for v in cval)
    fused = _FUSED_BORDERS.get(border) if flags == cv2.INTER_LINEAR else None
    if fused is not None:  # the same bytes, one pass (fused_warp); None where it does not run
        warped = fused_warp.warp_rgb(image, fused_warp.inverse_map(matrix.params), dsize, fused,
                                     fused_warp.border_value(border_value))
        if warped is not None:
            return warped
    warped = cv2.warpAffine(ia._normalize_cv2_input_arr_(image), matrix.params[:2], dsize=dsize,
                            flags=flags, borderMode=border, borderValue=border_value)
    return warped[..., np.newaxis] if warped.ndim == 2 else warped


def _builders() -> Sequence[tuple[type, tuple[str, ...], Callable[[Any], Node]]]:
    """(class, the methods a subclass must not override, builder); containers first."""
    from imgaug.augmenters import arithmetic, blur, flip, geometric, meta

    common = ("augment_batch_", "_augment_batch_", "get_children_lists")
    return (
        (meta.Sequential, common, _sequential),
        (meta.Sometimes, common, _sometimes),
        (flip.Fliplr, common, lambda aug: _flip(aug, True)),
        (flip.Flipud, common, lambda aug: _flip(aug, False)),
        (arithmetic.Multiply, common, _multiply),
        (blur.GaussianBlur, common, _gaussian_blur),
        (geometric.Affine, common + ("_draw_samples", "_augment_images_by_samples"), _affine),
    )


def _imgaug_itself(aug: Any) -> Node:
    """A subtree this module does not mirror: reseeded from its SeedSequence as the whole tree's
    reseed would, then run through imgaug (its result depends only on that seed)."""
    from .imgaug_compat import TreeSeeder, augment_one

    seeder = TreeSeeder(aug)

    def run(image: np.ndarray, seq: np.random.SeedSequence) -> np.ndarray:
        seeder.reseed(seq)
        return augment_one(aug, image, copy=False)  # the image is this run's own copy

    return run


def compile_node(aug: Any) -> Node:
    """One augmenter -> `run(image, seq)`: mirrored where this module can, else imgaug itself."""
    if aug.deterministic or not aug.activated:
        return _imgaug_itself(aug)
    for base, methods, build in _builders():
        if isinstance(aug, base) and _same_method(aug, base, *methods):
            try:
                return build(aug)
            except Unsupported:
                break
    return _imgaug_itself(aug)


def compile_tree(root: Any) -> Callable[[np.ndarray, int], np.ndarray | None]:
    """`run(image, seed)` equal to reseeding `root` with `seed` (`TreeSeeder`) and augmenting a
    copy of one HxWxC image (`augment_one`). `run` returns None for an image that is not HxWxC,
    and for a drawn value imgaug itself would refuse: the caller then runs imgaug, which says so."""
    node = compile_node(root)

    def run(image: np.ndarray, seed: int) -> np.ndarray | None:
        if image.ndim != 3:
            return None
        try:
            return node(image.copy(), np.random.SeedSequence(seed))
        except Unsupported:
            return None

    return run
