"""Every stage added with the KerasCV policies and the control stages writes the same bytes with
any worker count and batch size, after a kill and --resume, and on the Beam runner."""

from __future__ import annotations

from pathlib import Path

import pytest

from augexport import api, run
from tests.conftest import make_class_folder
from tests.helpers import shard_hashes

SPEC = {
    "copies": 3,
    "stages": [
        {"randaugment": {"value_range": [0, 255], "augmentations_per_image": 2, "magnitude": 0.4, "rate": 0.8}},
        {"one_of": [{"augmix": {"severity": 0.4}}, {"grayscale": {"output_channels": 3}}]},
        {"some_of": {"n": [1, 2], "random_order": True, "children": [
            {"random_resized_crop": {"scale": [0.3, 1.0]}}, {"random_erasing": {"p": 1.0, "mode": "rand"}},
            {"sequential": {"children": [{"gridmask": {}}, {"cutout": {}}], "random_order": True}}]}},
    ],
    "mix": [{"method": "cutmix", "p": 0.5}, {"switch": {"cutmix": 0.5, "mixup": 0.5}, "p": 0.5}],
    "image_size": [40, 48],
}
KW = {"overrides": SPEC, "shard_size": "16KiB"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("new") / "src", {"a": 30, "b": 25, "c": 20})


@pytest.fixture(scope="module")
def reference(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    out = tmp_path_factory.mktemp("ref") / "out"
    api.export(str(folder), out, workers=1, batch_size=16, **KW)
    return shard_hashes(out)


@pytest.mark.parametrize("workers,batch", [(2, 1), (2, 7)])
def test_same_bytes_with_any_workers_and_batch_size(folder: Path, tmp_path: Path, reference: list, workers: int,
                                                    batch: int) -> None:
    api.export(str(folder), tmp_path / "out", workers=workers, batch_size=batch, **KW)
    assert shard_hashes(tmp_path / "out") == reference and len(reference) > 3


def test_same_bytes_after_an_interrupt_and_resume(folder: Path, tmp_path: Path, reference: list,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = run.ShardWriter.write

    def interrupted(self: object, planned: int, framed: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 120:  # a few shards in
            raise KeyboardInterrupt
        real(self, planned, framed)  # type: ignore[arg-type]

    monkeypatch.setattr(run.ShardWriter, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        api.export(str(folder), tmp_path / "out", workers=1, **KW)
    monkeypatch.undo()
    assert list((tmp_path / "out").glob(".tmp-*-train.tfrecord-*"))  # finished shards were kept
    api.export(str(folder), tmp_path / "out", workers=2, resume=True, **KW)
    assert shard_hashes(tmp_path / "out") == reference


def test_same_bytes_on_the_beam_runner(folder: Path, tmp_path: Path, reference: list) -> None:
    pytest.importorskip("apache_beam")
    api.export(str(folder), tmp_path / "out", runner="beam", **KW)
    assert shard_hashes(tmp_path / "out") == reference
