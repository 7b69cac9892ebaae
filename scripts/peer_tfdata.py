"""The TensorFlow-native way to pre-augment (scripts/bench.py row (h)): a `tf.data` pipeline that
reads and decodes each JPEG, augments it with Keras 3 preprocessing layers (RandomFlip,
RandomRotation 20 degrees, RandomTranslation 0.1, RandomZoom 0.1; fill "nearest"), encodes it with
`tf.io.encode_jpeg` (q95), and a loop writing `tf.train.Example`s with `tf.io.TFRecordWriter`.

    python scripts/peer_tfdata.py SRC_DIR OUT.tfrecord [--workers 2]

SRC_DIR holds one folder per class. `--workers` sets tf.data's parallel calls and TensorFlow's
intra-/inter-op threads, so the row uses as many cores as the other rows with that worker count.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import tensorflow as tf


def configure(workers: int) -> None:
    """Thread counts; must run before TensorFlow executes its first op."""
    tf.config.threading.set_intra_op_parallelism_threads(workers)
    tf.config.threading.set_inter_op_parallelism_threads(workers)


def dataset(items: list[tuple[str, int]], workers: int) -> tf.data.Dataset:
    augment = keras.Sequential([
        keras.layers.RandomFlip("horizontal"),
        keras.layers.RandomRotation(20 / 360, fill_mode="nearest"),
        keras.layers.RandomTranslation(0.1, 0.1, fill_mode="nearest"),
        keras.layers.RandomZoom(0.1, fill_mode="nearest"),
    ])

    def load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = augment(tf.cast(image, tf.float32), training=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        return tf.io.encode_jpeg(image, quality=95), label

    ds = tf.data.Dataset.from_tensor_slices(([p for p, _ in items], [k for _, k in items]))
    return ds.map(load, num_parallel_calls=workers).prefetch(2 * workers)


def example(jpeg: bytes, label: int) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def list_images(src: Path) -> list[tuple[str, int]]:
    classes = sorted(p.name for p in src.iterdir() if p.is_dir())
    return [(str(f), k) for k, name in enumerate(classes) for f in sorted((src / name).iterdir()) if f.is_file()]


def run(items: list[tuple[str, int]], out: str, workers: int) -> int:
    """Augment and write every item; returns the number of records."""
    n = 0
    with tf.io.TFRecordWriter(out) as writer:
        for jpeg, label in dataset(items, workers).as_numpy_iterator():
            writer.write(example(jpeg, int(label)))
            n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("out")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    configure(args.workers)
    t0 = time.perf_counter()
    n = run(list_images(args.src), args.out, args.workers)
    print(f"{n} records in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
