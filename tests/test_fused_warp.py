"""The fused warp kernel gives cv2.warpAffine's bytes (bilinear, inverse map, replicate and
constant borders) for any map and size, and the keras stage's output does not depend on whether
the kernel runs."""

from __future__ import annotations

import platform
import shutil

import numpy as np
import pytest

from augexport import fused_warp

cv2 = pytest.importorskip("cv2")
FLAGS = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
BORDERS = ((fused_warp.REPLICATE, cv2.BORDER_REPLICATE), (fused_warp.CONSTANT, cv2.BORDER_CONSTANT))
needs_kernel = pytest.mark.skipif(not fused_warp.enabled(), reason="augexport._warp not built or no AVX2 here")


def _cpu_has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return " avx2" in f.read()
    except OSError:
        return False


def random_map(rng: np.random.Generator, h: int, w: int, wild: bool) -> np.ndarray:
    """Keras-like maps (rotation, shear, zoom, shift, flip) and wild ones (any angle, scale 0.1-4,
    shifts far outside)."""
    angle = rng.uniform(-np.pi, np.pi) if wild else np.deg2rad(rng.uniform(-20, 20))
    zx, zy = rng.uniform(0.1, 4, 2) if wild else rng.uniform(0.9, 1.1, 2)
    c, s = np.cos(angle), np.sin(angle)
    m = np.array([[c * zx, -s + rng.uniform(-0.5, 0.5), 0], [s, c * zy, 0]])
    m[:, 2] = rng.uniform(-0.2, 0.2, 2) * [w, h] + [w / 2, h / 2] - m[:, :2] @ [w / 2, h / 2]
    if wild and rng.random() < 0.2:
        m[:, 2] += rng.uniform(-1e5, 1e5, 2)
    if rng.random() < 0.3:
        m = m @ np.array([[-1, 0, w - 1], [0, 1, 0], [0, 0, 1]])
    return m


def opencv(image: np.ndarray, m: np.ndarray, size: tuple[int, int], border: int, cval: tuple[int, ...]) -> np.ndarray:
    return cv2.warpAffine(image, m, size, flags=FLAGS, borderMode=border, borderValue=cval)


@needs_kernel
@pytest.mark.parametrize("seed", range(4))
def test_same_bytes_as_opencv_over_random_maps_and_sizes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for i in range(120):
        h, w = (375, 500) if i % 20 == 0 else (int(v) for v in rng.integers(1, 90, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        m = random_map(rng, h, w, wild=i % 2 == 0)
        size = (w, h) if i % 5 else (int(rng.integers(1, 120)), int(rng.integers(1, 120)))
        for ours, theirs in BORDERS:
            cval = tuple(int(v) for v in rng.integers(0, 256, 3))
            got = fused_warp.warp_rgb(image, m, size, ours, cval)
            assert got is not None
            np.testing.assert_array_equal(got, opencv(image, m, size, theirs, cval + (0,)), err_msg=f"{m} {size}")


@needs_kernel
@pytest.mark.parametrize("m", [
    [[np.nan, 0, 0], [0, 1, 0]], [[1, 0, np.inf], [0, 1, 0]], [[1e12, 0, 0], [0, 1e12, 0]],
    [[0, 0, 0], [0, 0, 0]], [[1, 0, -3e9], [0, 1, 5]], [[1, 0, 2.5e6], [0, 1, 5]], [[1, 0, 0], [0, 1, 0]],
    [[1, 0, 0.5], [0, 1, -0.25]],
])
def test_degenerate_and_far_maps_match_opencv(m: list[list[float]]) -> None:
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for ours, theirs in BORDERS:
        got = fused_warp.warp_rgb(image, np.array(m), (30, 20), ours, (1, 2, 3))
        np.testing.assert_array_equal(got, opencv(image, np.array(m, float), (30, 20), theirs, (1, 2, 3, 0)))



@needs_kernel
def test_forward_maps_read_what_opencv_reads_after_inverting_them() -> None:
    """imgaug hands cv2 forward maps (no WARP_INVERSE_MAP); `inverse_map` is OpenCV's inversion,
    singular maps included, and `border_value` its Scalar (missing channels 0, saturated)."""
    rng = np.random.default_rng(5)
    for i in range(300):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        m = np.eye(3)[:2] + rng.normal(0, 0.3, (2, 3))
        m[:, 2] = rng.normal(0, 20, 2)
        if i % 50 == 0:
            m[:, :2] = 0
        cval = tuple(int(v) for v in rng.integers(-20, 300, int(rng.integers(1, 4))))
        for ours, theirs in BORDERS:
            want = cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=theirs, borderValue=cval)
            got = fused_warp.warp_rgb(image, fused_warp.inverse_map(m), (w, h), ours, fused_warp.border_value(cval))
            np.testing.assert_array_equal(got, want, err_msg=f"{m} {cval}")

@needs_kernel
def test_a_strided_view_is_read_as_its_pixels() -> None:
    view = np.random.default_rng(2).integers(0, 256, (40, 60, 3), dtype=np.uint8)[::2, ::2]
    m = np.array([[0.9, 0.1, 1], [0.1, 1.1, -2]])
    got = fused_warp.warp_rgb(view, m, (30, 20), fused_warp.REPLICATE)
    np.testing.assert_array_equal(got, opencv(np.ascontiguousarray(view), m, (30, 20), cv2.BORDER_REPLICATE, (0,)))


def test_other_images_and_the_switch_leave_it_to_opencv(monkeypatch: pytest.MonkeyPatch) -> None:
    m = np.eye(3)[:2]
    for image in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                  np.zeros((0, 4, 3), np.uint8)):
        assert fused_warp.warp_rgb(image, m, (4, 4), fused_warp.REPLICATE) is None
    assert fused_warp.warp_rgb(np.zeros((4, 4, 3), np.uint8), m, (0, 4), fused_warp.REPLICATE) is None
    monkeypatch.setenv("AUGEXPORT_FUSED_WARP", "0")
    assert not fused_warp.enabled()
    assert fused_warp.warp_rgb(np.zeros((4, 4, 3), np.uint8), m, (4, 4), fused_warp.REPLICATE) is None


class CountingKernel:
    """`augexport._warp` with its warp calls counted: a route that stopped reaching the kernel would
    still give OpenCV's bytes, so the tests below also check that it ran."""

    def __init__(self, real: object) -> None:
        self.real, self.calls = real, 0

    def available(self) -> bool:
        return self.real.available()  # type: ignore[attr-defined]

    def affine_rgb(self, *args: object) -> None:
        self.calls += 1
        self.real.affine_rgb(*args)  # type: ignore[attr-defined]


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> CountingKernel:
    counting = CountingKernel(fused_warp._warp)
    monkeypatch.setattr(fused_warp, "_warp", counting)
    return counting


@needs_kernel
@pytest.mark.parametrize(("fill_mode", "uses_kernel"), [("nearest", True), ("constant", True), ("reflect", False)])
def test_keras_stage_output_is_the_same_with_the_kernel_switched_off(monkeypatch: pytest.MonkeyPatch,
                                                                     kernel: CountingKernel, fill_mode: str,
                                                                     uses_kernel: bool) -> None:
    from augexport.stages import keras

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    for _ in range(20):
        m = random_map(rng, 61, 83, wild=False)
        m3 = np.vstack([m, [0, 0, 1]])
        monkeypatch.setenv("AUGEXPORT_FUSED_WARP", "1")
        on = keras.warp(image, m3, fill_mode, 40.0, 1)
        monkeypatch.setenv("AUGEXPORT_FUSED_WARP", "0")
        off = keras.warp(image, m3, fill_mode, 40.0, 1)
        np.testing.assert_array_equal(on, off)
    assert kernel.calls == (20 if uses_kernel else 0)


@needs_kernel
@pytest.mark.parametrize(("mode", "uses_kernel"), [("constant", True), ("edge", True), ("symmetric", False)])
def test_imgaug_affine_warp_runs_the_kernel_with_opencvs_bytes(kernel: CountingKernel, mode: str,
                                                               uses_kernel: bool) -> None:
    from types import SimpleNamespace

    from augexport import imgaug_compiled
    from augexport.imgaug_compat import import_imgaug

    import_imgaug()  # imgaug on numpy 2

    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    m = np.vstack([np.eye(3)[:2] + rng.normal(0, 0.2, (2, 3)), [0, 0, 1]])
    got = imgaug_compiled._warp_uint8_cv2(image, SimpleNamespace(params=m), 1, mode, (9, 200, 300), (50, 60))
    border = {"constant": cv2.BORDER_CONSTANT, "edge": cv2.BORDER_REPLICATE, "symmetric": cv2.BORDER_REFLECT}[mode]
    want = cv2.warpAffine(image, m[:2], (60, 50), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=(9, 200, 300))
    np.testing.assert_array_equal(got, want)
    assert kernel.calls == (1 if uses_kernel else 0)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not shutil.which("cc") or not _cpu_has_avx2(),
                    reason="the kernel is built with a C compiler and runs on x86-64 with AVX2")
def test_the_kernel_is_built_where_it_can_be() -> None:
    """setup.py builds it as an optional extension: a failed build is only a warning in pip's log,
    so here, where a compiler and AVX2 are present, its absence is a failure."""
    assert fused_warp._warp is not None, "augexport._warp was not built: `pip install -e .` again"
    assert fused_warp.enabled()
