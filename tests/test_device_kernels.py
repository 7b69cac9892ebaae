"""The device kernels (keras.ops) against the CPU kernels they replace, per keras fill mode and
interpolation order, per tf_image op and per mix method: within the stated tolerance. In this
process under the active Keras backend (TensorFlow by default: eager ops, so the CPU kernels'
arithmetic and the same bytes), and in subprocesses under KERAS_BACKEND=jax (read when Keras is
first imported; its kernels are XLA-compiled, which may fuse a multiply-add into one rounding) and,
where torch is installed, KERAS_BACKEND=torch (eager: the same bytes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from augexport.device import _chunks
from tests.conftest import ROOT
from tests.device_cases import KERNEL_CASES, measure_kernel, measure_mix

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module", autouse=True)
def _keras() -> None:
    pytest.importorskip("keras")


def _check(stats: dict[str, Any], exact: bool = True) -> None:
    assert stats["pixels"] > 0
    assert stats["within"], stats  # the promise: every pixel within 2 levels, >= 99.9% identical
    if exact:  # eager ops on the CPU device: the CPU kernels' arithmetic, the same bytes
        assert stats["max_levels"] == 0, stats


@pytest.mark.parametrize("name", list(KERNEL_CASES))
def test_device_kernel_matches_the_cpu_kernel(name: str) -> None:
    _check(measure_kernel(name))


@pytest.mark.parametrize(("n", "shape"), [(1, (9, 9, 3)), (3, (20, 24, 3)), (8, (8, 12, 3)), (4, (6, 4, 1))])
def test_device_kernels_hold_when_the_copy_count_equals_an_image_axis(n: int, shape: tuple[int, int, int]) -> None:
    """N copies against channels, height or width of the same length: per-copy terms (offsets,
    shifts, tables) stay per copy, and a single square copy keeps its full coordinate grid."""
    import numpy as np

    from augexport import device_ops
    from augexport.pipeline import build_pipeline
    from tests.device_cases import GEOMETRY, INTENSITY

    ims = [np.random.default_rng(k).integers(0, 256, shape, dtype=np.uint8) for k in range(n)]
    for spec in ({"keras": {**GEOMETRY, **INTENSITY}}, {"tf_image": [{"random_brightness": {"max_delta": 0.3}}]}):
        stage = build_pipeline({"stages": [spec]}).stages[0]
        params = [stage.draw(np.random.default_rng(7 + k), im.shape) for k, im in enumerate(ims)]
        cpu = np.stack([stage.run(im, p) for im, p in zip(ims, params, strict=True)])
        dev = device_ops.to_host(device_ops.apply_stage(stage, device_ops.to_device(ims), params))
        assert np.array_equal(dev, cpu), (spec, n, shape)


@pytest.mark.parametrize("order", [0, 1])
def test_device_wrap_and_fractional_fills_match_the_cpu_on_their_edge_cases(order: int) -> None:
    """A shift of exactly -(n-1) under wrap (scipy sends it to n-1), and a fractional cval under a
    brightness (truncated, as Keras hands it to PIL)."""
    import numpy as np

    from augexport import device_ops
    from augexport.stages.keras import apply_keras

    ims = [np.random.default_rng(k).integers(0, 256, (3, 4, 3), dtype=np.uint8) for k in range(3)]
    for mode, cval, params in (("wrap", 0.0, [{"tx": -3.0}, {"ty": -2.0}, {"tx": -6.0, "ty": 2.0}]),
                               ("constant", 77.6, [{"zx": 1.6, "zy": 1.6, "brightness": 2.5}, {"zx": 1.6, "zy": 1.6},
                                                   {"zx": 0.5, "zy": 0.5, "brightness": 0.8}])):
        dev = device_ops.to_host(device_ops.keras_warp(device_ops.to_device(ims), params, fill_mode=mode, cval=cval,
                                                       order=order, fix_axes=False))
        cpu = np.stack([apply_keras(im, p, fill_mode=mode, cval=cval, order=order) for im, p in zip(ims, params, strict=True)])
        assert np.array_equal(dev, cpu), (mode, order)


@pytest.mark.parametrize("fill_mode", ["reflect", "nearest"])
def test_device_warp_past_a_short_coordinate_matches_the_cpu(fill_mode: str) -> None:
    """OpenCV saturates the source coordinate to a short once, then reflects its neighbour + 1
    (32768) unsaturated: a shift or zoom reaching past 32767 px was up to 221 levels off."""
    import numpy as np

    from augexport import device_ops
    from augexport.stages.keras import apply_keras

    ims = [np.random.default_rng(k).integers(0, 256, (9, 13, 3), dtype=np.uint8) for k in range(5)]
    params = [{"tx": 32766.6}, {"tx": 35000.3, "ty": -39158.9}, {"ty": 32767.4}, {"tx": -40000.5},
              {"zx": 860.0, "zy": 820.0, "theta": -46.0}]
    for order in (0, 1):
        dev = device_ops.to_host(device_ops.keras_warp(device_ops.to_device(ims), params, fill_mode=fill_mode,
                                                       cval=0.0, order=order, fix_axes=False))
        cpu = np.stack([apply_keras(im, p, fill_mode=fill_mode, cval=0.0, order=order)
                        for im, p in zip(ims, params, strict=True)])
        assert np.array_equal(dev, cpu), (fill_mode, order)


@pytest.mark.parametrize("method", ["cutmix", "mixup"])
def test_device_mix_matches_numpy(method: str) -> None:
    _check(measure_mix(method))


def test_hsv_kernels_on_a_large_batch() -> None:
    """Hue and saturation over many pixels (TF's double-precision hue offsets, the sextant edges)."""
    for name in ("tf_image random_saturation", "tf_image random_hue"):
        _check(measure_kernel(name, n=8, h=160, w=200))


def test_device_saturation_past_float32_matches_tf_on_greys() -> None:
    """A factor past float32's range is inf: a grey's 0 · inf must come out 0 (TF's clamp), not NaN."""
    import numpy as np

    from augexport import device_ops
    from augexport.device_ops.colour import saturation
    from augexport.stages.tf_image import adjust_saturation

    im = np.array([[[128, 128, 128], [200, 10, 40], [0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    for factor in (3.5e38, 2.0):
        dev = device_ops.to_host(saturation(device_ops.to_device([im]), np.array([factor], dtype=np.float32)))
        assert np.array_equal(dev[0], adjust_saturation(im, factor)), factor


def _cases_under(backend: str) -> dict[str, Any]:
    """tests.device_cases in a subprocess under KERAS_BACKEND=backend (read once, at Keras' import)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]), "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "tests.device_cases"], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert set(result["cases"]) == {*KERNEL_CASES, "mix cutmix", "mix mixup"}
    return result["cases"]  # type: ignore[no-any-return]


def test_device_kernels_under_jax() -> None:
    pytest.importorskip("jax")
    for stats in _cases_under("jax").values():
        _check(stats, exact=False)  # XLA may fuse a multiply and an add into one rounding


def test_device_kernels_under_torch() -> None:
    """torch is not a test dependency (its wheel is gigabytes): this runs where it is installed."""
    pytest.importorskip("torch")
    for stats in _cases_under("torch").values():
        _check(stats)  # eager, op by op, like TensorFlow: the same bytes


def test_device_batches_are_powers_of_two_within_the_pixel_budget() -> None:
    """So jax compiles a handful of batch sizes per image shape; the padding repeats the last copy."""
    chunks = _chunks(list(range(100)), (224, 224, 3))
    assert [(len(c), real) for c, real in chunks] == [(64, 64), (64, 36)]
    assert chunks[1][0][36:] == [99] * 28
    assert [(len(c), real) for c, real in _chunks(list(range(5)), (1024, 1024, 3))] == [(8, 5)]
    assert [(len(c), real) for c, real in _chunks(list(range(3)), (4000, 4000, 3))] == [(1, 1)] * 3
