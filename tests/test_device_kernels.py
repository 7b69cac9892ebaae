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


@pytest.mark.parametrize("method", ["cutmix", "mixup"])
def test_device_mix_matches_numpy(method: str) -> None:
    _check(measure_mix(method))


def test_hsv_kernels_on_a_large_batch() -> None:
    """Hue and saturation over many pixels (TF's double-precision hue offsets, the sextant edges)."""
    for name in ("tf_image random_saturation", "tf_image random_hue"):
        _check(measure_kernel(name, n=8, h=160, w=200))


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
