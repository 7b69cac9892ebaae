"""ms/image of the keras-stage kernel vs tf.keras ImageDataGenerator.apply_transform on one 375x500x3 image.

Usage: PYTHONPATH=. python scripts/bench_keras_kernel.py  (single thread; CPU time, so a busy machine
inflates the numbers less than wall time would)."""

from __future__ import annotations

import time
import warnings

import cv2
import numpy as np

from augexport.stages.keras import KerasStage

CONFIG = {"rotation_range": 20, "width_shift_range": 0.1, "height_shift_range": 0.1, "shear_range": 10,
          "zoom_range": 0.1, "horizontal_flip": True}


def per_image_ms(fn, params: list[dict]) -> float:
    fn(params[0])
    t0 = time.process_time()
    for p in params:
        fn(p)
    return (time.process_time() - t0) / len(params) * 1e3


def main() -> None:
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), (500, 375), interpolation=cv2.INTER_CUBIC)
    for mode in ("nearest", "reflect", "constant", "wrap"):
        stage = KerasStage.from_spec({**CONFIG, "fill_mode": mode}, "keras")
        params = [stage.sample(rng, image.shape) for _ in range(200)]
        print(f"augexport keras kernel, fill_mode={mode:<8}  {per_image_ms(lambda p, s=stage: s.apply(image, p), params):7.2f} ms/image")
    import tensorflow as tf

    warnings.simplefilter("ignore")
    idg = tf.keras.preprocessing.image.ImageDataGenerator(fill_mode="nearest")
    stage = KerasStage.from_spec(CONFIG, "keras")
    params = [stage.sample(rng, image.shape) for _ in range(30)]
    as_float = image.astype(np.float32)
    print(f"Keras apply_transform (float32 input, nearest) {per_image_ms(lambda p: idg.apply_transform(as_float, p), params):7.2f} ms/image")
    print(f"Keras apply_transform (uint8 input, nearest)   {per_image_ms(lambda p: idg.apply_transform(image, p), params):7.2f} ms/image")


if __name__ == "__main__":
    main()
