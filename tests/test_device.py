"""--device: the device path (keras warp, tf_image colour ops and mixing in keras.ops in the main
process; forced onto the backend's CPU with AUGEXPORT_DEVICE_ON_CPU=1) writes the CPU path's
records: the same params and soft labels, pixels within the stated tolerance (measured: the same
bytes), deterministic across workers and batch sizes; `auto` picks it only by its rule and
imports nothing without a GPU hint; `gpu` without a GPU is exit 2 naming the backend."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from augexport import api, device
from augexport.cli import main
from augexport.codec import decode
from augexport.device import FORCE_ENV, pixel_stats
from augexport.offload import Offload, device_start, offload
from augexport.pipeline import build_pipeline
from tests.conftest import ROOT, make_class_folder
from tests.helpers import manifest, read_records, shard_hashes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HEAVY = [{"keras": {"rotation_range": 25, "width_shift_range": 0.1, "zoom_range": 0.15, "horizontal_flip": True,
                    "fill_mode": "reflect", "brightness_range": [0.7, 1.3]}},
         {"tf_image": [{"random_hue": {"max_delta": 0.1}}, {"random_saturation": {}}, {"random_contrast": {"p": 0.5}},
                       {"random_flip_up_down": {}}]}]


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 small PNGs of 6 different sizes, plus one unreadable file (a partner that cannot be mixed)."""
    root = make_class_folder(tmp_path_factory.mktemp("dev") / "src", {"a": 5, "b": 4, "c": 3})
    (root / "b" / "broken.png").write_bytes(b"not an image")
    return root


def _export(src: Path, out: Path, dev: str, monkeypatch: pytest.MonkeyPatch, forced: bool = True,
            **kw: Any) -> api.ExportResult:
    if forced:
        monkeypatch.setenv(FORCE_ENV, "1")
    else:
        monkeypatch.delenv(FORCE_ENV, raising=False)
    overrides = {"seed": 7, "copies": 3, "stages": HEAVY, **kw.pop("overrides", {})}
    try:
        return api.export(str(src), out, overrides=overrides, device=dev, encoding="png",
                          workers=kw.pop("workers", 1), **kw)
    finally:
        monkeypatch.delenv(FORCE_ENV, raising=False)


def _rows(out: Path) -> list[dict[str, Any]]:
    return [{"source_id": r["source_id"][0], "copy": r["copy"][0], "label": r["label"][0],
             "mix_source_id": r["mix_source_id"][0], "mix_lambda": float(r["mix_lambda"][0]),
             "soft_label": np.asarray(r["soft_label"]).tolist(), "params": json.loads(r["params"][0]),
             "image": r["image"][0]} for r in read_records(out)]


def _same_records_within_tolerance(a: Path, b: Path, channels: int = 3) -> dict[str, Any]:
    """Every record of `b` has `a`'s params, labels and order; pixels within the tolerance."""
    ra, rb = _rows(a), _rows(b)
    assert len(ra) == len(rb) > 0
    cpu, dev = [], []
    for x, y in zip(ra, rb, strict=True):
        assert {k: x[k] for k in x if k != "image"} == {k: y[k] for k in y if k != "image"}
        cpu.append(decode(x["image"], channels=channels).ravel())
        dev.append(decode(y["image"], channels=channels).ravel())
    stats = pixel_stats(np.concatenate(cpu), np.concatenate(dev))
    assert stats["within"], stats
    return stats


@pytest.mark.parametrize(("mix", "overrides", "channels"), [
    ({"method": "cutmix", "alpha": 0.6, "p": 1.0}, {}, 3),  # mixed sizes: one device batch per shape
    ([{"method": "cutmix", "p": 0.7}, {"method": "mixup", "alpha": 0.4, "p": 0.7}], {"image_size": [20, 28]}, 3),
    ({"method": "mixup", "p": 1.0}, {}, 1),  # grey: the HSV ops leave it as it is, as TF does
    (None, {"image_size": [24, 30]}, 3),  # device stages alone, no mixing
])
def test_device_path_writes_the_cpu_paths_records(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  mix: Any, overrides: dict[str, Any], channels: int) -> None:
    pytest.importorskip("keras")
    over = {**overrides, "mix": mix}
    cpu = _export(src, tmp_path / "cpu", "cpu", monkeypatch, overrides=over, channels=channels)
    dev = _export(src, tmp_path / "dev", "gpu", monkeypatch, overrides=over, channels=channels)
    assert cpu.path == "cpu" and cpu.summary().endswith("; path: cpu")
    assert dev.path.startswith("device (keras, tf_image") and f"cpu ({FORCE_ENV})" in dev.summary()
    assert cpu.written == dev.written == 12 * 4 and cpu.skipped == dev.skipped == 1
    if mix is not None:
        assert sum(r["mix_source_id"] not in (b"", "") for r in _rows(tmp_path / "dev")) > 10
    stats = _same_records_within_tolerance(tmp_path / "cpu", tmp_path / "dev", channels)
    assert stats["same"] == 1.0  # measured: the CPU device gives the CPU path's bytes
    assert shard_hashes(tmp_path / "cpu") == shard_hashes(tmp_path / "dev")


def test_manifest_records_path_backend_and_device(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keras = pytest.importorskip("keras")
    _export(src, tmp_path / "dev", "gpu", monkeypatch, overrides={"mix": {"method": "mixup", "p": 0.5}})
    _export(src, tmp_path / "cpu", "cpu", monkeypatch)
    dev = manifest(tmp_path / "dev")["splits"]["train"]["timings"]
    assert dev["device"] == "gpu" and dev["path"] == "device" and dev["keras_backend"] == keras.backend.backend()
    assert dev["accelerator"] == f"cpu ({FORCE_ENV})" and dev["device_stages"] == ["keras", "tf_image", "mix"]
    assert dev["device_seconds"] >= 0 and dev["device_copies"] == 36
    cpu = manifest(tmp_path / "cpu")["splits"]["train"]["timings"]
    assert cpu["device"] == "cpu" and cpu["path"] == "cpu" and "keras_backend" not in cpu
    again = _export(src, tmp_path / "dev", "gpu", monkeypatch, overrides={"mix": {"method": "mixup", "p": 0.5}},
                    resume=True)
    assert again.path.startswith("device (keras, tf_image, mix on ")  # a finished split says how it was written


def test_device_path_is_deterministic_across_workers_and_batches(src: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("keras")
    over = {"mix": [{"method": "cutmix", "p": 0.8}, {"method": "mixup", "p": 0.5}], "image_size": [26, 30]}
    one = _export(src, tmp_path / "w1", "gpu", monkeypatch, overrides=over, workers=1, batch_size=16)
    two = _export(src, tmp_path / "w2", "gpu", monkeypatch, overrides=over, workers=2, batch_size=3)
    assert one.path == two.path != "cpu"
    assert shard_hashes(tmp_path / "w1") == shard_hashes(tmp_path / "w2")


def test_per_class_pipelines_on_the_device_path(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each class's own stage list has its own device suffix: a CPU stage before it stays in the
    worker, a class whose last stage is not device-capable renders on the CPU and is only mixed."""
    pytest.importorskip("keras")
    over = {"mix": {"method": "cutmix", "p": 1.0}, "image_size": [24, 32],
            "classes": {"a": {"stages": [{"cutout": {"size": 0.3}}, *HEAVY]},
                        "b": {"stages": [HEAVY[0], {"gridmask": {}}], "copies": 2}}}
    _export(src, tmp_path / "cpu", "cpu", monkeypatch, overrides=over)
    _export(src, tmp_path / "dev", "gpu", monkeypatch, overrides=over)
    stats = _same_records_within_tolerance(tmp_path / "cpu", tmp_path / "dev")
    assert stats["same"] == 1.0


def test_device_stages_draw_exactly_the_cpu_paths_params() -> None:
    """The worker samples the device suffix without applying it: the same generator, the same order."""
    from augexport.worker import Job, Renderer

    spec = build_pipeline({"seed": 3, "copies": 2, "stages": [{"cutout": {"p": 0.5}}, *HEAVY]}).to_spec()
    cpu, dev = Renderer(Job(spec, 3)), Renderer(Job(spec, 3, device=True))
    image = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    for copy in (1, 2, 3):
        _, params = cpu.augment("x.png", 1, copy, image)
        deferred = dev.prepare("x.png", 1, copy, image)
        assert deferred.params == params and (deferred.start, deferred.end) == (1, 3)
        assert np.array_equal(deferred.pixels, cpu.plan.stages(1, copy)[0].run(image, params[0]["params"]))


def test_device_suffix_rule() -> None:
    def stages(*specs: Any) -> Any:
        return build_pipeline({"stages": list(specs)}).stages

    keras1, keras3 = {"keras": {"rotation_range": 5}}, {"keras": {"interpolation_order": 3}}
    colour, crop = {"tf_image": [{"random_hue": {}}]}, {"tf_image": [{"random_hue": {}}, {"random_crop": {}}]}
    assert device_start(stages(keras1, colour)) == 0
    assert device_start(stages(keras1, {"cutout": {}}, colour)) == 2
    assert device_start(stages(keras3, colour)) == 1  # spline orders 2..5 stay scipy's
    assert device_start(stages(keras1, crop)) == 2  # a crop is no colour op
    assert device_start(stages({"one_of": [keras1, colour]})) == 1
    work = offload([stages(keras1), stages({"cutout": {}}, {"tf_image": [{"random_brightness": {}}]})], True, None)
    assert work.names() == ["keras", "tf_image", "mix"] and work.heavy and work.worth_it(8)
    assert not work.worth_it(9)  # the workers would outrun the main process that moves the pixels
    assert not offload([stages(colour)], False, (64, 64)).worth_it(2)  # small images: the CPU is cheaper
    assert not offload([stages({"tf_image": [{"random_brightness": {}}]})], True, None).worth_it(2)  # tables only
    assert not offload([stages({"cutout": {}})], True, (224, 224)).worth_it(2)  # mixing alone
    assert offload([stages(keras1, keras1, colour, colour)], False, None).names() == ["keras", "tf_image"]  # once each


def test_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORCE_ENV, raising=False)

    def no_backend(backend: str) -> list[str]:
        raise AssertionError("no backend may be asked")

    heavy, mix_only = Offload(("keras",), True, True), Offload((), True, False)
    monkeypatch.setattr(device, "gpu_hint", lambda: False)
    monkeypatch.setattr(device, "backend_gpus", no_backend)
    assert device.resolve("auto", heavy).describe() == "cpu"  # no GPU hint: nothing imported
    assert device.resolve("cpu", heavy).describe() == "cpu"
    monkeypatch.setattr(device, "gpu_hint", lambda: True)
    assert device.resolve("auto", mix_only).describe() == "cpu"  # not worth a GPU
    monkeypatch.setattr(device, "backend_gpus", lambda backend: [])
    monkeypatch.setattr(device, "_missing", lambda backend: None)
    assert device.resolve("auto", heavy).describe() == "cpu"  # device files, but the backend sees no GPU
    monkeypatch.setattr(device, "backend_gpus", lambda backend: ["cuda:0"])
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    picked = device.resolve("auto", heavy, workers=4)
    assert picked.on_device and picked.describe() == "device (keras, mix on jax cuda:0)"
    assert device.resolve("auto", heavy, workers=16).describe() == "cpu"
    assert device.resolve("gpu", mix_only).describe() == "device (mix on jax cuda:0)"  # asked for: taken
    assert device.resolve("gpu", Offload()).describe() == "cpu"  # nothing to run there
    with pytest.raises(api.UsageError, match="accepted: auto, cpu, gpu"):
        device.resolve("tpu", heavy)


def test_keras_backend_is_found_as_keras_finds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert device.keras_backend() == "tensorflow"
    (tmp_path / "keras.json").write_text(json.dumps({"backend": "torch"}))
    assert device.keras_backend() == "torch"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert device.keras_backend() == "jax"


@pytest.mark.parametrize(("backend", "needle"), [
    ("tensorflow", "--device gpu: the Keras backend 'tensorflow' sees no GPU on this machine"),
    ("jax", "--device gpu: the Keras backend 'jax' sees no GPU on this machine"),
    ("torch", "needs torch: not installed (pip install torch)"),
])
def test_gpu_without_gpu_exits_2_naming_the_backend(src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    backend: str, needle: str) -> None:
    if device.gpu_hint():
        pytest.skip("this machine may have a GPU")
    monkeypatch.delenv(FORCE_ENV, raising=False)
    pytest.importorskip("keras")
    if backend == "torch":
        if device.importlib.util.find_spec("torch") is not None:
            pytest.skip("torch is installed here")
    else:
        pytest.importorskip(backend)
    monkeypatch.setenv("KERAS_BACKEND", backend)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", str(src), str(out), "--device", "gpu", "--copies", "1",
                                    "--rotation-range", "10", "--quiet"])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "--device cpu" in res.output
    assert not out.exists()  # refused before OUT was touched


def test_auto_imports_no_keras_without_a_gpu_hint(src: Path, tmp_path: Path) -> None:
    if device.gpu_hint():
        pytest.skip("this machine has GPU device files: auto is meant to ask the backend here")
    code = (f"import sys; from augexport import api; "
            f"r = api.export({str(src)!r}, {str(tmp_path / 'out')!r}, workers=1, device='auto', "
            f"overrides={{'copies': 2, 'stages': {HEAVY!r}, 'mix': {{'method': 'mixup', 'p': 1.0}}}}); "
            f"print(r.summary()); print(sorted(m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules))")
    env = {k: v for k, v in os.environ.items() if k != FORCE_ENV}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    summary, imported = done.stdout.strip().splitlines()[-2:]
    assert summary.endswith("; path: cpu") and imported == "[]"


def test_device_path_workers_never_import_keras(src: Path) -> None:
    """A spawned worker, started as the engine starts it, renders device-path units (prepare) and
    encodes finished copies (the second task kind) without importing Keras or a backend."""
    from augexport.engine import plan_export
    from augexport.plan import make_plan
    from augexport.sources.open import open_source
    from augexport.worker import Finished, Job, init_worker, land_result, run_encodes, run_units
    from tests import worker_probe

    listing = open_source(str(src))
    pipeline = build_pipeline({"copies": 2, "stages": HEAVY, "mix": {"method": "cutmix", "p": 1.0}})
    job = Job(pipeline.to_spec(), 3, device=True)
    block = next(iter(plan_export(listing.items, make_plan(pipeline), pipeline.mix, True)))
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=init_worker,
                                initargs=(job, os.getpid(), 1)) as pool:
        outs = land_result(pool.submit(run_units, block.units).result())
        pending = [r.pending for o in outs for r in o.records if r.pending is not None]
        assert pending and all(p.on_device for p in pending)
        done = pool.submit(run_encodes, [Finished("x", p.label, p.copy, p.pixels, p.params, []) for p in pending[:3]])
        assert all(r.framed for r in done.result())
        assert pool.submit(worker_probe.heavy_modules).result() == []


def test_beam_with_gpu_is_a_usage_error(src: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    with pytest.raises(api.UsageError, match="--device gpu is not available with --runner beam"):
        api.export(str(src), tmp_path / "out", runner="beam", device="gpu")
    assert not (tmp_path / "out").exists()  # refused before OUT was touched


def test_pixels_travel_through_shared_memory_and_leave_nothing() -> None:
    """Deferred pixels (partners once) and finished pixels cross processes as shared-memory
    references; the receiver gets equal arrays and the segment is gone after it has read them."""
    from multiprocessing import shared_memory

    from augexport.pixel_share import SharedPixels
    from augexport.worker import (
        Deferred,
        Finished,
        MixStep,
        RecordOut,
        UnitOut,
        land_deferred,
        land_finished,
        ship_deferred,
        ship_finished,
    )

    g = np.random.default_rng(0)
    partner = Deferred(g.integers(0, 256, (5, 7, 3), dtype=np.uint8), 0, 1, 0, 1, [])
    base = Deferred(g.integers(0, 256, (4, 6, 1), dtype=np.uint8), 1, 2, 0, 1, [],
                    [MixStep(partner, {"stage": "mix"}, "p", 0)])
    pixels = (base.pixels.copy(), partner.pixels.copy())
    outs = [UnitOut("a", [RecordOut(2, b"", 1, False, None, pending=base)]),
            UnitOut("p", [RecordOut(1, b"", 0, False, None, pending=partner)])]
    ship_deferred(outs)
    assert isinstance(base.pixels, SharedPixels) and base.pixels.segment == partner.pixels.segment
    name = base.pixels.segment
    land_deferred(outs)
    assert np.array_equal(base.pixels, pixels[0]) and np.array_equal(partner.pixels, pixels[1])
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=name)
    shipped = ship_finished([Finished("a", 1, 2, pixels[0], [], [])])
    assert isinstance(shipped[0].image, SharedPixels)
    assert np.array_equal(land_finished(shipped)[0].image, pixels[0])


def test_records_travel_through_shared_memory_and_leave_nothing() -> None:
    """Every task's framed records (and kept image files) reach the main process through one
    shared segment: equal bytes, in place, and the segment is gone once read."""
    from multiprocessing import shared_memory

    from augexport.pixel_share import SharedBytes
    from augexport.worker import RecordOut, UnitOut, land_result, ship_records

    blobs = [bytes([k]) * (1000 + k) for k in range(3)]
    outs = [UnitOut("a", [RecordOut(0, blobs[0], 1, False, blobs[2]), RecordOut(1, blobs[1], 1, True, None)]),
            UnitOut("b", [], "not a readable image")]
    ship_records(outs)
    refs = [outs[0].records[0].framed, outs[0].records[1].framed, outs[0].records[0].image]
    assert all(isinstance(r, SharedBytes) for r in refs) and len({r.segment for r in refs}) == 1
    land_result(outs)
    assert [outs[0].records[0].framed, outs[0].records[1].framed, outs[0].records[0].image] == blobs
    assert outs[0].records[1].image is None and outs[1].error == "not a readable image"
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=refs[0].segment)


def test_an_export_sweeps_the_segments_of_dead_exports() -> None:
    """`kill -9` of a whole process group kills the resource tracker too: its segments stay in
    /dev/shm. They are tagged with their export's PID namespace and main process, and the next
    export removes those of its namespace whose process is gone (never a live one's, and never
    another namespace's: /dev/shm may be shared with containers whose pids are not visible)."""
    import subprocess
    import sys
    from multiprocessing import shared_memory

    from augexport import pixel_share

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    gone = f"augexport-{pixel_share.owner_for(dead, 'ab12')}-0a1b"
    kept = [f"augexport-{pixel_share.owner_for(os.getpid(), 'cd34')}-2c3d", f"augexport-1-{dead}-ab12-0a1b",
            "augexport-x-y"]
    made = [shared_memory.SharedMemory(name, create=True, size=8) for name in (gone, *kept)]
    try:
        pixel_share.sweep()
        present = set(os.listdir(pixel_share.SHM_DIR))
        assert gone not in present and set(kept) <= present
    finally:
        for shm in made:
            shm.close()
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()


def test_a_pool_that_stops_early_leaves_no_segments(tmp_path: Path) -> None:
    """--on-error fail stops the pool with finished results never read: their segments are
    removed with the pool, not left to the resource tracker at this process's exit."""
    from augexport import pixel_share
    from augexport.errors import ExportFailed

    src = make_class_folder(tmp_path / "src", {"a": 40, "b": 40}, size=(40, 48), fmt="jpg")
    (src / "b" / "img_039.jpg").write_bytes(b"not a jpeg")
    before = set(pixel_share._ours())
    with pytest.raises(ExportFailed):
        api.export(src, tmp_path / "out", workers=2, batch_size=2, copies=2, on_error="fail")
    assert set(pixel_share._ours()) <= before
