"""Train one small Keras CNN on an exported split and record validation accuracy per epoch.

TensorFlow and Keras are imported here, inside functions, only when `augexport compare` trains.
Input comes straight from the exported TFRecord shards through `tf.data` (streaming; no decoded
copy of the dataset in memory). Targets are the records' `soft_label` (one-hot, or the exact
CutMix/MixUp mixture), so the loss is categorical cross-entropy; accuracy is the argmax match.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    batch_size: int = 32
    filters: int = 32  # width of the first conv layer; 2x and 4x after each pooling
    learning_rate: float = 1e-3
    image_size: tuple[int, int] = (32, 32)
    num_classes: int = 10
    progress: bool = False


@dataclass
class TrainRun:
    seed: int
    val_accuracy: list[float]  # one value per epoch
    seconds: float


def quiet_tensorflow() -> None:
    """TensorFlow's start-up chatter off (as for tfds sources), before TensorFlow is first imported."""
    from ..quiet import quiet_stderr
    from ..sources.tfds import _quiet_tensorflow

    _quiet_tensorflow()
    with quiet_stderr():  # TF's C++ start-up lines are printed at import, before any log level applies
        import tensorflow  # noqa: F401


def _dataset(files: list[Path], settings: TrainSettings, records: int, shuffle_seed: int | None) -> Any:
    """(image float32 0..255, soft_label) batches; shuffled and repeated forever when `shuffle_seed` is set."""
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string),
            "soft_label": tf.io.FixedLenFeature([settings.num_classes], tf.float32)}
    h, w = settings.image_size

    def parse(raw: Any) -> Any:
        ex = tf.io.parse_single_example(raw, spec)
        image = tf.io.decode_image(ex["image"], channels=3, expand_animations=False)
        image = tf.image.resize(image, (h, w))  # identity for records already h x w
        image.set_shape((h, w, 3))
        return image, ex["soft_label"]

    ds = tf.data.TFRecordDataset([str(f) for f in files])
    if shuffle_seed is not None:
        ds = ds.shuffle(min(records, 50_000), seed=shuffle_seed, reshuffle_each_iteration=True).repeat()
    else:  # a known length: Keras then validates on all of it every epoch without an end-of-data warning
        ds = ds.apply(tf.data.experimental.assert_cardinality(records))
    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)


def build_model(settings: TrainSettings) -> Any:
    """Three conv blocks (f, 2f, 4f filters, 3x3, ReLU, 2x2 max-pool), dense 4f, dropout, softmax."""
    import keras

    f = settings.filters
    layers = [keras.Input((*settings.image_size, 3)), keras.layers.Rescaling(1 / 255)]
    for width in (f, 2 * f, 4 * f):
        layers += [keras.layers.Conv2D(width, 3, padding="same", activation="relu"), keras.layers.MaxPooling2D()]
    layers += [keras.layers.Flatten(), keras.layers.Dense(4 * f, activation="relu"), keras.layers.Dropout(0.3),
               keras.layers.Dense(settings.num_classes, activation="softmax")]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss="categorical_crossentropy",
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])
    return model


def _progress_callback(label: str, total: int) -> Any:
    """A tqdm bar over the training steps of one run, the last validation accuracy beside it."""
    import keras
    from tqdm import tqdm

    class Bar(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            self.bar = tqdm(total=total, desc=label, unit="step", file=sys.stderr, dynamic_ncols=True, leave=False)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.bar.update(1)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.bar.set_postfix(epoch=epoch + 1, val_acc=f"{(logs or {}).get('val_accuracy', 0):.3f}")

        def on_train_end(self, logs: Any = None) -> None:
            self.bar.close()

    return Bar()


def train_once(train_files: list[Path], train_records: int, val_files: list[Path], val_records: int,
               settings: TrainSettings, seed: int, steps_per_epoch: int, label: str = "") -> TrainRun:
    """One seeded training run: Keras' seeds (Python, numpy, TF) and deterministic TF ops."""
    quiet_tensorflow()
    import keras
    import tensorflow as tf

    t0 = time.perf_counter()
    was_deterministic = _determinism_enabled()
    tf.config.experimental.enable_op_determinism()  # cheap on CPU; makes repeats reproducible
    try:
        keras.utils.set_random_seed(seed)
        model = build_model(settings)
        callbacks = [_progress_callback(label, settings.epochs * steps_per_epoch)] if settings.progress else []
        history = model.fit(_dataset(train_files, settings, train_records, shuffle_seed=seed),
                            validation_data=_dataset(val_files, settings, val_records, shuffle_seed=None),
                            epochs=settings.epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=0,
                            callbacks=callbacks)
    finally:
        if not was_deterministic:
            _disable_determinism()
        keras.backend.clear_session()
    return TrainRun(seed, [float(v) for v in history.history["val_accuracy"]], time.perf_counter() - t0)


def _determinism_enabled() -> bool:
    from tensorflow.python.framework import config  # is_op_determinism_enabled is not public

    return bool(config.is_op_determinism_enabled())


def _disable_determinism() -> None:
    """Leave the process as it was: determinism is global, and tests share one process."""
    from tensorflow.python.framework import config

    config.disable_op_determinism()

