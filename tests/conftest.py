"""Shared fixtures: small generated class folders (no downloads), the bundled sample_data."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA = ROOT / "sample_data"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def smooth_image(seed: int, h: int, w: int, c: int = 3) -> np.ndarray:
    """A smooth random uint8 image (photo-like: bilinear upsampling of coarse noise)."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(max(2, h // 6), max(2, w // 6), c)).astype(np.uint8)
    out = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, c)


def make_class_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (24, 32), fmt: str = "png") -> Path:
    """root/<class>/<i>.<fmt> with smooth random images of slightly varying sizes."""
    k = 0
    for cls, n in classes.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = size[0] + (k % 3) * 4, size[1] + (k % 2) * 6
            Image.fromarray(smooth_image(k, h, w)).save(root / cls / f"img_{i:03d}.{fmt}")
            k += 1
    return root


@pytest.fixture
def small_folder(tmp_path: Path) -> Path:
    return make_class_folder(tmp_path / "src", {"a": 4, "b": 3, "c": 3})


@pytest.fixture(scope="session")
def sample_data() -> Path:
    return SAMPLE_DATA


# -- a real S3 API on loopback (moto in server mode), for the object-store tests -----------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1 and a free port, for the whole session; nothing leaves the machine."""
    server_mod = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent/aws-config",
          "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials"}


@pytest.fixture
def s3(s3_server: str, monkeypatch: pytest.MonkeyPatch):
    """A fresh bucket on the loopback S3 server, with the environment (endpoint, dummy credentials)
    that augexport, its worker processes and subprocesses read; returns the fsspec filesystem and
    the bucket name."""
    import s3fs

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    for key, value in S3_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # instances keep the credentials and endpoint they started with
    fs = s3fs.S3FileSystem(use_listings_cache=False, skip_instance_cache=True)
    bucket = f"b{uuid.uuid4().hex[:16]}"
    fs.mkdir(bucket)
    yield fs, bucket
    s3fs.S3FileSystem.clear_instance_cache()
