"""The README's reading snippets run as written on an export without --image-size (images of many
sizes, where a plain `.batch(32)` fails)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from augexport import api
from tests.conftest import ROOT


def _block_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    return re.search(re.escape(marker) + r".*?```python\n(.*?)```", text, re.S).group(1)  # type: ignore[union-attr]


def test_the_tfds_reading_snippet_batches_images_of_many_sizes(tmp_path: Path, sample_data: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorflow_datasets")
    api.export(str(sample_data), tmp_path / "out", workers=1)  # no --image-size: 29 different sizes
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(_block_after("Read it with TFDS:"), scope)
    images, soft = next(iter(scope["ds"]))  # type: ignore[call-overload]
    assert tuple(images.shape) == (30, 224, 224, 3) and tuple(soft.shape) == (30, 3)
