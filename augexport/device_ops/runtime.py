"""Tensors in and out, and how a kernel is called: eagerly, or compiled once per shape under jax.

A kernel is `fn(batch, arrays, static)`: `batch` the (N, H, W, C) uint8 tensor, `arrays` the
copies' params as host arrays prepared per call (turned into tensors here), `static` a hashable
tuple of Python values that choose the code path. Under jax, eager `keras.ops` compile every op
for every new shape (seconds per image shape), so the kernel is `jax.jit`-ed as a whole instead;
TensorFlow and torch run it eagerly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

Tensor = Any
Kernel = Callable[[Tensor, dict[str, Tensor], tuple[Any, ...]], Tensor]
_JITTED: dict[Kernel, Kernel] = {}


def to_device(images: Sequence[np.ndarray]) -> Tensor:
    return ops.convert_to_tensor(np.stack([np.asarray(i) for i in images]))


def to_host(batch: Tensor) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(batch))


def u8(x: Tensor) -> Tensor:
    return ops.cast(x, "uint8")


def run(kernel: Kernel, batch: Tensor, arrays: dict[str, np.ndarray], static: tuple[Any, ...] = ()) -> Tensor:
    """Call `kernel` on the active backend; arrays keep their dtypes (int32, float32, bool, uint8)."""
    tensors = {k: ops.convert_to_tensor(v) for k, v in arrays.items()}
    if keras.backend.backend() != "jax":
        return kernel(batch, tensors, static)
    jitted = _JITTED.get(kernel)
    if jitted is None:
        import jax  # the backend itself

        jitted = _JITTED[kernel] = jax.jit(kernel, static_argnums=2)
    return jitted(batch, tensors, static)


def add(x: Tensor, y: Tensor) -> Tensor:
    """`ops.add` with both operands broadcast to their common shape first. Keras' TensorFlow
    backend turns an `add` whose second operand has one axis longer than 1 into `tf.nn.bias_add`
    along the first operand's last axis (or axis 1) when that length matches: a per-copy
    (N, 1, 1, 1) term of N copies then lands on the channels (N = C) or rows (N = H)."""
    sx, sy = tuple(getattr(x, "shape", ())), tuple(getattr(y, "shape", ()))
    if sx == sy or not sx or not sy:  # nothing to broadcast, or a scalar (never taken for a bias)
        return ops.add(x, y)
    shape = np.broadcast_shapes(sx, sy)
    return ops.add(ops.broadcast_to(x, shape), ops.broadcast_to(y, shape))


def per_copy(values: Tensor) -> Tensor:
    """(N,) -> (N, 1, 1, 1), to broadcast one value per copy over its pixels."""
    return ops.reshape(values, (-1, 1, 1, 1))


def copy_offsets(n: int, stride: int) -> Tensor:
    """(N, 1, 1, 1) int32: where copy k starts in a flattened batch of `stride` entries per copy."""
    return ops.reshape(ops.multiply(ops.arange(n, dtype="int32"), stride), (n, 1, 1, 1))
