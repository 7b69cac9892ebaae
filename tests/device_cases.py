"""The device kernels against the CPU kernels, case by case: shared by the in-process tests
(TensorFlow backend), the subprocess test under KERAS_BACKEND=jax, and the tolerance table in
docs/performance.md (`KERAS_BACKEND=jax python -m tests.device_cases` prints it as JSON)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from augexport.device import pixel_stats
from augexport.pipeline import build_pipeline
from augexport.stages.mix import apply_mix, sample_mix

GEOMETRY = {"rotation_range": 30, "width_shift_range": 0.2, "height_shift_range": 0.2, "shear_range": 10,
            "zoom_range": 0.2, "horizontal_flip": True, "vertical_flip": True}
INTENSITY = {"channel_shift_range": 40, "brightness_range": [0.5, 1.5]}

#: name -> (stage spec, channels)
KERNEL_CASES: dict[str, tuple[dict[str, Any], int]] = {
    **{f"keras {mode} order {order}{' +intensity' if extra else ''}":
       ({"keras": {**GEOMETRY, **(INTENSITY if extra else {}), "fill_mode": mode, "interpolation_order": order,
                   "cval": 100.6}}, 3)
       for mode in ("constant", "nearest", "reflect", "wrap") for order in (0, 1) for extra in (False, True)},
    "keras fix_axes zoom out": ({"keras": {**GEOMETRY, "fix_axes": True, "zoom_range": [0.3, 4.0]}}, 3),
    "keras grey +intensity": ({"keras": {**GEOMETRY, **INTENSITY}}, 1),
    "keras flips + intensity only": ({"keras": {**INTENSITY, "horizontal_flip": True}}, 3),
    **{f"tf_image {op}": ({"tf_image": [{op: args}]}, 3) for op, args in (
        ("random_brightness", {"max_delta": 0.3}), ("random_contrast", {"lower": 0.3, "upper": 1.8}),
        ("random_saturation", {"lower": 0.0, "upper": 3.0}), ("random_hue", {"max_delta": 0.5}),
        ("random_flip_left_right", {}), ("random_flip_up_down", {}))},
    "tf_image chain p=0.5, grey": ({"tf_image": [{"random_brightness": {"p": 0.5}}, {"random_hue": {"p": 0.5}},
                                                 {"random_contrast": {"p": 0.5}}]}, 1),
}


def images(n: int, h: int, w: int, c: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random images with hard-edged boxes: both interpolation and edges get exercised."""
    import cv2

    g = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        im = cv2.resize(g.integers(0, 256, (h // 6 + 1, w // 6 + 1, c)).astype(np.uint8), (w, h),
                        interpolation=cv2.INTER_CUBIC).reshape(h, w, c)
        im[h // 3: h // 2, w // 4: w // 2] = 255
        im[h // 2: 2 * h // 3, w // 3: w // 2] = 0
        out.append(im)
    return out


def measure_kernel(name: str, n: int = 8, h: int = 45, w: int = 60) -> dict[str, Any]:
    from augexport import device_ops

    spec, channels = KERNEL_CASES[name]
    stage = build_pipeline({"stages": [spec]}).stages[0]
    ims = images(n, h, w, channels)
    params = [stage.draw(np.random.default_rng(100 + i), im.shape) for i, im in enumerate(ims)]
    cpu = np.stack([stage.run(im, p) for im, p in zip(ims, params, strict=True)])
    dev = device_ops.to_host(device_ops.apply_stage(stage, device_ops.to_device(ims), params))
    return pixel_stats(cpu, dev)


def measure_mix(method: str, n: int = 12) -> dict[str, Any]:
    from augexport import device_ops

    g = np.random.default_rng(21)
    bases = [g.integers(0, 256, (37, 90, 3), dtype=np.uint8) for _ in range(n)]
    partners = [g.integers(0, 256, (37, 90, 3) if i % 3 else (50, 31, 3), dtype=np.uint8) for i in range(n)]
    entries = [sample_mix(g, method, 0.7, 37, 90) for _ in range(n)]
    if method == "mixup":  # exact .5 blends: rounding half to even on both paths
        entries[0] = {"method": "mixup", "lambda": 0.5}
    cpu = np.stack([apply_mix(b, p, e) for b, p, e in zip(bases, partners, entries, strict=True)])
    return pixel_stats(cpu, device_ops.mix_arrays(bases, partners, entries))


def measure_all(n: int = 8, h: int = 45, w: int = 60) -> dict[str, dict[str, Any]]:
    out = {name: measure_kernel(name, n, h, w) for name in KERNEL_CASES}
    out.update({f"mix {m}": measure_mix(m, max(12, n)) for m in ("cutmix", "mixup")})
    return out


if __name__ == "__main__":
    import sys

    import keras

    size = [int(v) for v in sys.argv[1:4]] if len(sys.argv) > 3 else [8, 45, 60]  # copies, height, width
    print(json.dumps({"backend": keras.backend.backend(), "cases": measure_all(*size)}))
