"""Unusable URLs exit 2 before any work, naming the path and what to install or set; nothing is
written. Plus the `RemoteOutDir` contract: names validated, folder copies with the marker last,
the lock (conditional PUT on S3, a dead run's lock taken over, a live or foreign one refused)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from augexport.cli import main
from augexport.errors import DecodeError, SourceUnavailable, UsageError
from augexport.outdir import UnsafePath
from tests.conftest import make_class_folder


def _export(*args: str) -> Any:
    return CliRunner().invoke(main, ["export", *args, "--workers", "1", "--quiet"])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_src(s3: tuple[Any, str], tmp_path: Path) -> str:
    fs, bucket = s3
    fs.put(str(make_class_folder(tmp_path / "src", {"a": 2, "b": 2})), f"{bucket}/src", recursive=True)
    return f"s3://{bucket}/src"


def _reset_s3fs() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


def test_unreachable_endpoint_exits_2_naming_the_path(s3_src: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries; s3fs still retries a few times
    _reset_s3fs()
    res = _export(s3_src, str(tmp_path / "out"))
    assert res.exit_code == 2 and f"SOURCE {s3_src}" in res.output and "cannot reach" in res.output, res.output
    assert "AWS_ENDPOINT_URL" in res.output and not (tmp_path / "out").exists()
    res = _export(str(tmp_path / "src"), "s3://bucket/out")
    assert res.exit_code == 2 and "OUT s3://bucket/out" in res.output and "cannot reach" in res.output
    assert "Errno" not in res.output and "OSError" not in res.output, res.output


def test_missing_bucket_exits_2_and_writes_nothing(s3: tuple[Any, str], s3_src: str, tmp_path: Path) -> None:
    fs, bucket = s3
    res = _export(s3_src, "s3://no-such-bucket-here/out")
    assert res.exit_code == 2 and "bucket 'no-such-bucket-here' does not exist" in res.output, res.output
    res = _export("s3://no-such-bucket-here/src", str(tmp_path / "out"))
    assert res.exit_code == 2 and "SOURCE s3://no-such-bucket-here/src does not exist" in res.output
    assert not (tmp_path / "out").exists()
    res = _export(s3_src, str(tmp_path / "out"), "--config", f"s3://{bucket}/nope.yaml")
    assert res.exit_code == 2 and f"--config s3://{bucket}/nope.yaml" in res.output
    assert fs.find(bucket) == sorted(fs.find(f"{bucket}/src"))  # nothing but the source


def test_out_inside_an_s3_source_is_refused(s3_src: str, s3: tuple[Any, str]) -> None:
    fs, bucket = s3
    res = _export(s3_src, f"{s3_src}/out")
    assert res.exit_code == 2 and "is inside SOURCE" in res.output, res.output
    assert not [p for p in fs.find(bucket) if "/out/" in p]


def test_no_credentials_exits_2_naming_what_to_set(s3_src: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    _reset_s3fs()
    res = _export(s3_src, str(tmp_path / "out"))
    assert res.exit_code == 2 and "no credentials" in res.output and "AWS_PROFILE" in res.output, res.output
    res = _export(str(tmp_path / "src"), s3_src.replace("/src", "/out"))
    assert res.exit_code == 2 and "no credentials" in res.output and "OUT s3://" in res.output
    assert not (tmp_path / "out").exists()


def test_scheme_without_its_package_exits_2_with_the_install_line(small_folder: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fsspec")
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    res = _export(str(small_folder), "gs://bucket/out")
    assert res.exit_code == 2 and "OUT gs://bucket/out" in res.output and "gcsfs" in res.output
    assert "pip install 'augexport[remote]'" in res.output
    res = _export("gs://bucket/src", str(tmp_path / "out"))
    assert res.exit_code == 2 and "SOURCE gs://bucket/src" in res.output and "gcsfs" in res.output
    res = _export(str(small_folder), "nosuchscheme://bucket/out")
    assert res.exit_code == 2 and "nosuchscheme:// is not a protocol fsspec knows" in res.output
    monkeypatch.setitem(sys.modules, "fsspec", None)
    res = _export(str(small_folder), "s3://bucket/out")
    assert res.exit_code == 2 and "URLs need fsspec" in res.output and "augexport[remote]" in res.output
    assert not (tmp_path / "out").exists() and not (Path.cwd() / "gs:").exists()


def test_tfds_data_dir_on_s3_is_refused_with_the_reason(tmp_path: Path, s3: tuple[Any, str]) -> None:
    pytest.importorskip("tensorflow_datasets")
    _, bucket = s3
    res = _export("tfds:mnist", str(tmp_path / "out"), "--data-dir", f"s3://{bucket}/tfds")
    assert res.exit_code == 2 and f"--data-dir s3://{bucket}/tfds" in res.output, res.output
    assert "tf.io.gfile" in res.output and "no s3:// file system" in res.output
    assert not (tmp_path / "out").exists()


def test_source_item_reads_objects_and_tells_missing_from_unreachable(s3: tuple[Any, str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from augexport.sources import SourceItem

    fs, bucket = s3
    fs.pipe_file(f"{bucket}/blob", b"0123456789")
    fs.pipe_file(f"{bucket}/empty", b"")
    assert SourceItem("x", 0, path=f"s3://{bucket}/blob").read() == b"0123456789"
    assert SourceItem("x", 0, path=f"s3://{bucket}/blob", offset=2, length=3).read() == b"234"
    assert SourceItem("x", 0, path=f"s3://{bucket}/empty").read() == b""
    with pytest.raises(DecodeError, match="exceeds the limit"):
        SourceItem("x", 0, path=f"s3://{bucket}/blob").read(max_bytes=4)
    with pytest.raises(DecodeError, match="cannot read file"):
        SourceItem("x", 0, path=f"s3://{bucket}/missing").read()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    _reset_s3fs()
    with pytest.raises(SourceUnavailable, match="cannot reach"):  # fails the run instead of skipping everything
        SourceItem("x", 0, path=f"s3://{bucket}/blob").read()


def test_remote_outdir_contract(s3: tuple[Any, str]) -> None:
    from augexport.objstore import RemoteOutDir, open_outdir

    fs, bucket = s3
    out = open_outdir(f"s3://{bucket}/out/")
    assert isinstance(out, RemoteOutDir) and out.location == f"s3://{bucket}/out" and out.remote
    out.write_atomic("a.json", b"{}")
    out.put("images/.tmp-train/cat/x.jpg", b"x")
    out.put("images/.tmp-train/.augexport-run", b"key\n")
    out.put("images/.tmp-train/dog/y.jpg", b"y")
    assert out.entries() == ["a.json", "images"] and out.is_dir("images") and out.is_file("a.json")
    assert out.read_bytes("a.json") == b"{}" and not out.exists("b.json") and out.entries("nothing") == []
    with pytest.raises(UnsafePath):
        out.put("../escape", b"")
    with pytest.raises(UsageError, match="is an object where augexport needs a folder"):
        out.makedirs("a.json/sub")
    copied: list[str] = []
    copy = fs.copy
    out.fs.copy = lambda a, b, **kw: (copied.append(a.rpartition("/")[2]), copy(a, b, **kw))  # type: ignore[method-assign]
    out.rename("images/.tmp-train", "images/train")
    assert copied[-1] == ".augexport-run" and sorted(copied[:-1]) == ["x.jpg", "y.jpg"]
    assert out.entries("images") == ["train"] and out.read_bytes("images/train/dog/y.jpg") == b"y"
    with out.open_new("big") as f:
        f.write(b"z" * 10)
    f2 = out.open_new("dropped")
    f2.write(b"never")
    out.discard_new(f2)
    assert not out.exists("dropped") and out.sha256("big") == hashlib.sha256(b"z" * 10).hexdigest()
    out.remove("images")
    out.unlink("a.json")
    out.unlink("a.json")  # missing: fine
    assert out.entries() == ["big"]


def _exit_now() -> None:
    pass


def test_s3_lock_refuses_a_live_holder_and_takes_over_a_dead_one(s3: tuple[Any, str]) -> None:
    from augexport.objstore import open_outdir

    fs, bucket = s3
    out, lock = open_outdir(f"s3://{bucket}/out"), f"{bucket}/out/.augexport.lock"
    with out.lock():
        holder = json.loads(fs.cat_file(lock))
        with pytest.raises(UsageError, match=f"pid {holder['pid']} on host {socket.gethostname()}") as err:
            with open_outdir(f"s3://{bucket}/out").lock():
                pass
        assert f"s3://{bucket}/out/.augexport.lock" in str(err.value)
    assert not fs.exists(lock)
    dead = mp.get_context("spawn").Process(target=_exit_now)
    dead.start()
    dead.join()
    fs.pipe_file(lock, json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}).encode())
    with out.lock():  # the holder's process is gone: taken over by a conditional overwrite
        assert json.loads(fs.cat_file(lock))["pid"] != dead.pid
    assert not fs.exists(lock)
    fs.pipe_file(lock, json.dumps({"pid": dead.pid, "host": "another-machine", "started": "then"}).encode())
    with pytest.raises(UsageError, match="on host another-machine.*delete the lock object"):
        with out.lock():
            pass
    assert json.loads(fs.cat_file(lock))["host"] == "another-machine"  # left alone


def test_s3_lock_of_a_killed_run_not_yet_reaped_is_taken_over(s3: tuple[Any, str]) -> None:
    """`timeout -s KILL` kills its own group too, leaving the export a zombie for init to reap:
    its pid still answers signal 0, but it holds nothing any more."""
    import os
    import signal
    import subprocess
    import time

    from augexport.objstore import _start_time, _stat_fields, open_outdir

    fs, bucket = s3
    lock = f"{bucket}/zombie/.augexport.lock"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"pid": child.pid, "host": socket.gethostname(), "pid_start": _start_time(child.pid),
                  "started": "then"}
        fs.pipe_file(lock, json.dumps(holder).encode())
        with pytest.raises(UsageError, match=f"pid {child.pid}"):  # alive: refused
            with open_outdir(f"s3://{bucket}/zombie").lock():
                pass
        os.kill(child.pid, signal.SIGKILL)
        for _ in range(500):  # not waited on: a zombie once the kernel has torn it down
            if (_stat_fields(child.pid) or [b""])[0] == b"Z":
                break
            time.sleep(0.01)
        with open_outdir(f"s3://{bucket}/zombie").lock():
            assert json.loads(fs.cat_file(lock))["pid"] == os.getpid()
    finally:
        child.kill()
        child.wait()


@pytest.mark.parametrize("url", ["s3://", "s3:///"])
def test_a_url_without_a_bucket_is_refused_not_taken_as_a_local_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    src = make_class_folder(tmp_path / "src", {"a": 2})
    monkeypatch.chdir(tmp_path)
    (tmp_path / url.split("/")[0]).mkdir()  # a local folder `s3:` must not receive the export
    res = _export(str(src), url)
    assert res.exit_code == 2 and "names no bucket or host" in res.output, res.output
    res = _export(url, str(tmp_path / "out"))
    assert res.exit_code == 2 and "names no bucket or host" in res.output, res.output
    assert not list((tmp_path / url.split("/")[0]).iterdir()) and not (tmp_path / "out").exists()


def test_an_http_out_is_refused_before_anything_is_written(s3: tuple[Any, str], s3_server: str,
                                                           tmp_path: Path) -> None:
    fs, bucket = s3
    src = make_class_folder(tmp_path / "src", {"a": 2})
    res = _export(str(src), f"{s3_server}/{bucket}/out")
    assert res.exit_code == 2 and "http:// is read-only" in res.output, res.output
    assert fs.ls(bucket) == []


def test_unfinalize_gives_up_at_the_first_failure_of_the_store() -> None:
    """A store that died mid-finalize answers every call only after its retries (seconds each):
    putting N shards back must not cost N of them."""
    from types import SimpleNamespace

    from augexport.naming import SplitNames
    from augexport.run import ExportRun

    calls: list[str] = []

    class DeadStore:
        def __getattr__(self, name: str) -> Any:
            def call(*args: Any) -> Any:
                calls.append(name)
                raise OSError(5, "cannot reach the storage endpoint")
            return call

    closed = [SimpleNamespace(file=f".tmp-shard-{i}") for i in range(500)]
    fake = SimpleNamespace(names=SplitNames("ds", "train"), outdir=DeadStore(), out_plan=SimpleNamespace(manifest=None))
    ExportRun._unfinalize(fake, closed, None)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_storage_errors_are_explained_by_their_kind_and_libraries_stay_quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp's ClientConnectorDNSError (gs:// offline) is a ClientConnectorError: it read as a bare
    class name; gcsfs logged each retry's traceback to the terminal before augexport's message."""
    import logging

    from augexport.fs import explain, open_fs

    ClientConnectorError = type("ClientConnectorError", (OSError,), {})
    dns = type("ClientConnectorDNSError", (ClientConnectorError,), {})("Cannot connect to host storage.example:443")
    assert explain(dns).startswith("cannot reach the storage endpoint (Cannot connect to host")
    refresh = type("RefreshError", (Exception,), {})
    assert explain(type("InvalidGrant", (refresh,), {})("bad token")).startswith("no credentials")
    monkeypatch.delenv("AUGEXPORT_VERBOSE", raising=False)
    pytest.importorskip("s3fs")
    from augexport import quiet

    for name in ("gcsfs", "botocore"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
    monkeypatch.setattr(quiet, "_CLI", False)
    open_fs("s3://bucket/x", "OUT s3://bucket/x")  # a library caller's logging is its own
    assert logging.getLogger("gcsfs").level == logging.getLogger("botocore").level == logging.NOTSET
    monkeypatch.setattr(quiet, "_CLI", True)  # the CLI's terminal shows augexport's message alone
    open_fs("s3://bucket/x", "OUT s3://bucket/x")
    assert logging.getLogger("gcsfs").level == logging.getLogger("botocore").level == logging.CRITICAL
    assert explain(BrokenPipeError(32, "Broken pipe")).startswith("BrokenPipeError")  # a builtin by its own name
