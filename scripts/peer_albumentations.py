"""The script a user writes instead of augexport for keras-basic augmentation (scripts/bench.py
row (g)): a process pool decodes with simplejpeg, augments with albumentations (Affine: rotate 20,
shift 0.1, shear 10, zoom 0.1; HorizontalFlip), encodes (q95, 4:2:0, as augexport writes), and the
main process writes `tf.train.Example`s with `tf.io.TFRecordWriter`, in order.

    python scripts/peer_albumentations.py SRC_DIR OUT.tfrecord [--workers 2]

SRC_DIR holds one folder per class. The pool forks (Linux's default), so workers inherit the
imports; one worker runs in-process. No seeds: albumentations draws from its own generator.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

import albumentations as A
import cv2
import simplejpeg
import tensorflow as tf

TRANSFORM = A.Compose([
    A.Affine(rotate=(-20, 20), translate_percent=(-0.1, 0.1), shear=(-10, 10), scale=(0.9, 1.1),
             border_mode=cv2.BORDER_REPLICATE, p=1.0),  # keras-basic: always warped, fill "nearest"
    A.HorizontalFlip(p=0.5),
])


def augment(item: tuple[str, int]) -> tuple[bytes, int]:
    path, label = item
    with open(path, "rb") as f:
        image = simplejpeg.decode_jpeg(f.read(), colorspace="RGB")
    image = TRANSFORM(image=image)["image"]
    return simplejpeg.encode_jpeg(image, quality=95, colorspace="RGB", colorsubsampling="420"), label


def example(jpeg: bytes, label: int) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature={
        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def list_images(src: Path) -> list[tuple[str, int]]:
    classes = sorted(p.name for p in src.iterdir() if p.is_dir())
    return [(str(f), k) for k, name in enumerate(classes) for f in sorted((src / name).iterdir()) if f.is_file()]


def run(items: list[tuple[str, int]], out: str, workers: int, chunksize: int = 16) -> int:
    """Augment and write every item; returns the number of records."""
    pool = mp.Pool(workers) if workers > 1 else None  # before TF opens the file: fork a clean process
    try:
        results = pool.imap(augment, items, chunksize) if pool else map(augment, items)
        n = 0
        with tf.io.TFRecordWriter(out) as writer:
            for jpeg, label in results:
                writer.write(example(jpeg, label))
                n += 1
        return n
    finally:
        if pool:
            pool.close()
            pool.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", type=Path)
    ap.add_argument("out")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    t0 = time.perf_counter()
    n = run(list_images(args.src), args.out, args.workers)
    print(f"{n} records in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
