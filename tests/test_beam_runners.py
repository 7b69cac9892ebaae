"""Beam beyond the DirectRunner, and never a download: the default runner, a portable runner with
an EXTERNAL worker pool of separate processes (reading and writing S3 themselves), and runners
that would fetch a binary or jar at run time are refused. A network guard (tests/netguard.py) in
this process and, through sitecustomize, in every Python subprocess fails the test on any attempt
to reach a non-loopback address."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from augexport.cli import main
from tests import netguard
from tests.conftest import make_class_folder
from tests.helpers import shard_hashes

ROOT = Path(__file__).resolve().parent.parent
PIPELINE = {"copies": 2, "image_size": 32, "stages": [{"keras": {"rotation_range": 20, "horizontal_flip": True}}],
            "mix": {"method": "cutmix", "p": 0.5}}


@pytest.fixture
def guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The network guard here and in subprocesses; yields its log (must stay empty)."""
    pytest.importorskip("apache_beam")
    log = tmp_path / "netguard.log"
    log.touch()
    site = netguard.sitecustomize_dir(tmp_path / "site", ROOT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv(netguard.ENV, str(log))
    netguard.install(str(log))
    yield log
    netguard.uninstall()


def _export(*args: str) -> Any:
    return CliRunner().invoke(main, ["export", *args, "--quiet"], catch_exceptions=False)


def test_the_guard_catches_beams_own_direct_runner_fetching_prism(guard: Path) -> None:
    """The control: Beam 2.77's DirectRunner tries to download Prism (and falls back)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        _ = p | beam.Create([1, 2]) | beam.Map(lambda x: x + 1)
    assert "github" in guard.read_text(), "Beam's DirectRunner no longer fetches Prism: the guard proves nothing"


def test_default_beam_runner_never_reaches_the_network(guard: Path, tmp_path: Path) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 4, "b": 4})
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps(PIPELINE))
    assert _export(str(src), str(tmp_path / "local"), "--config", str(cfg), "--workers", "1").exit_code == 0
    res = _export(str(src), str(tmp_path / "beam"), "--config", str(cfg), "--runner", "beam")
    assert res.exit_code == 0, res.output
    assert shard_hashes(tmp_path / "beam") == shard_hashes(tmp_path / "local")
    assert guard.read_text() == ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def worker_pool(guard: Path, s3: tuple[Any, str]) -> str:
    """Beam's worker pool as a separate process (what a cluster node runs): it starts one SDK
    harness process per worker, each with this environment (S3 endpoint, credentials, guard)."""
    port = _free_port()
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"localhost:{port}"
    proc.kill()
    proc.wait()


def test_portable_runner_external_workers_read_and_write_s3(worker_pool: str, guard: Path, tmp_path: Path,
                                                            s3: tuple[Any, str]) -> None:
    fs, bucket = s3
    src = make_class_folder(tmp_path / "src", {"a": 5, "b": 4})
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps(PIPELINE))
    fs.put(str(src), f"{bucket}/src", recursive=True)
    flags = ("--config", str(cfg), "--format", "both", "--num-shards", "2")
    assert _export(str(src), str(tmp_path / "local"), *flags, "--workers", "1").exit_code == 0
    res = _export(f"s3://{bucket}/src", f"s3://{bucket}/out", *flags, "--runner", "beam",
                  "--beam-option", "runner=PortableRunner", "--beam-option", "job_endpoint=embed",
                  "--beam-option", "environment_type=EXTERNAL", "--beam-option", f"environment_config={worker_pool}")
    assert res.exit_code == 0, res.output
    out = f"{bucket}/out"
    remote = {p[len(out) + 1:]: hashlib.sha256(fs.cat_file(p)).hexdigest() for p in fs.find(out)}
    local = {p.relative_to(tmp_path / "local").as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in (tmp_path / "local").rglob("*") if p.is_file()}
    for name, digest in local.items():
        if ".tfrecord-" in name or name.startswith("images/") and not name.endswith(".augexport-run"):
            assert remote.get(name) == digest, name
    assert len([n for n in remote if n.startswith("images/train/")]) == 29  # 27 images, labels.csv, the marker
    assert json.loads(fs.cat_file(f"{out}/augexport.json"))["splits"]["train"]["timings"]["runner"] == "beam"
    assert guard.read_text() == ""


@pytest.mark.parametrize(("options", "message"), [
    (["runner=PrismRunner"], "would download the Prism binary"),
    (["runner=FlinkRunner", "flink_master=localhost:8081"], "job server jar from Maven"),
    (["runner=SparkRunner"], "spark_job_server_jar"),
])
def test_runners_that_would_download_are_refused_before_out_is_touched(options: list[str], message: str,
                                                                       small_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("apache_beam")
    flags = [x for o in options for x in ("--beam-option", o)]
    res = CliRunner().invoke(main, ["export", str(small_folder), str(tmp_path / "out"), "--runner", "beam", *flags])
    assert res.exit_code == 2 and message in res.output, res.output
    assert not (tmp_path / "out").exists()


def test_portable_runners_default_to_the_loopback_environment() -> None:
    pytest.importorskip("apache_beam")
    from augexport.beam import pipeline_flags

    assert "--environment_type=LOOPBACK" in pipeline_flags(["runner=PortableRunner", "job_endpoint=embed"])
    assert "--environment_type=LOOPBACK" not in pipeline_flags(["runner=FlinkRunner", "environment_type=DOCKER"])
    assert not any("environment_type" in f for f in pipeline_flags([]))
