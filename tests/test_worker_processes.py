"""Worker processes never outlive the main process, never print their own tracebacks, and an
interrupt stops the whole run at once (no graceful wait), at any moment, resumable afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, make_class_folder
from tests.helpers import shard_hashes


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folder(tmp_path_factory.mktemp("w") / "src", {"a": 40, "b": 40}, size=(64, 80))


def _cmd(src: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "augexport", "export", str(src), str(out), "--copies", "40", "--rotation-range",
            "30", "--encoding", "png", "--shard-size", "64KiB", "--workers", "2", "--batch-size", "2", "--quiet", *extra]


def _start(cmd: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _group_gone(pgid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _wait_for_workers(pgid: int, at_least: int = 3) -> None:
    """Until the group holds the main process and its workers (spawned, running)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
        members = 0
        for p in procs:
            try:
                members += os.getpgid(int(p.name)) == pgid
            except (ProcessLookupError, PermissionError):
                pass
        if members >= at_least:
            return
        time.sleep(0.05)
    pytest.fail("the workers never started")


def test_kill_9_of_the_main_process_takes_the_workers_down(corpus: Path, tmp_path: Path) -> None:
    proc = _start(_cmd(corpus, tmp_path / "out"))
    _wait_for_workers(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # only the main process, as the OOM killer does
    proc.wait(timeout=10)
    assert _group_gone(proc.pid, within=10), "a worker (or the resource tracker) outlived the main process"


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8, 1.5, 2.2])
def test_sigterm_or_ctrl_c_at_any_moment_stops_at_once_without_tracebacks(corpus: Path, tmp_path: Path,
                                                                          delay: float) -> None:
    out = tmp_path / "out"
    proc = _start(_cmd(corpus, out))
    time.sleep(delay)
    signum = signal.SIGINT if int(delay * 10) % 2 == 0 else signal.SIGTERM
    os.killpg(proc.pid, signum)
    t0 = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 15, "the interrupt stalled"
    if proc.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    if proc.returncode == 1 and "init_sys_streams" in err:  # CPython's own start-up, before any augexport code
        pytest.skip("the signal landed while the interpreter was opening its standard streams")
    # before Python installs its handlers the default action ends the process: as quick, as quiet
    assert proc.returncode in (128 + signum, -signum), err
    assert "Traceback" not in err, err
    assert _group_gone(proc.pid, within=10)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(_cmd(corpus, out, "--resume"), check=True, env=env, cwd=ROOT)
    clean = tmp_path / "clean"
    subprocess.run(_cmd(corpus, clean), check=True, env=env, cwd=ROOT)
    assert shard_hashes(out) == shard_hashes(clean)


def test_workers_import_opencv_and_pil_only_when_a_stage_or_codec_needs_them(tmp_path: Path) -> None:
    """A worker's start-up is paid by every run: one exporting plain JPEG originals imports neither
    OpenCV nor PIL (~0.1 s), and OpenCV still gets the worker's share of the cores once it loads."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from augexport.engine import plan_export
    from augexport.pipeline import build_pipeline
    from augexport.plan import make_plan
    from augexport.sources.open import open_source
    from augexport.worker import Job, init_worker, land_result, run_units
    from tests import worker_probe

    src = make_class_folder(tmp_path / "src", {"a": 3}, size=(40, 48), fmt="jpg")
    pipeline = build_pipeline({})
    block = next(iter(plan_export(open_source(str(src)).items, make_plan(pipeline), None, True)))
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=init_worker,
                                initargs=(Job(pipeline.to_spec(), 1), os.getpid(), 1)) as pool:
        outs = land_result(pool.submit(run_units, block.units).result())
        assert [len(o.records) for o in outs] == [1, 1, 1] and all(r.framed for o in outs for r in o.records)
        assert pool.submit(worker_probe.loaded, ["cv2", "PIL"]).result() == []
        assert pool.submit(worker_probe.opencv_threads).result() == 1


_THREADED = ("import threading, time; threading.Thread(target=time.sleep, args=(3600,), daemon=True).start(); "
             "from augexport.__main__ import main; main()")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def _worker_command_lines(proc: subprocess.Popen[str]) -> list[str]:
    """What each worker of `proc` runs, read until `proc` ends (the resource tracker left out).
    A forked worker's command line is its parent's; a spawned one runs multiprocessing's
    `spawn_main` (read again each time: a spawned one shows its parent's until its exec, and an
    exited one, not yet reaped, shows none)."""
    seen: dict[int, str] = {}
    while proc.poll() is None:
        for pid in _children(proc.pid):
            with contextlib.suppress(OSError):
                if cmd := (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    seen[pid] = cmd
        time.sleep(0.01)
    return [cmd for cmd in seen.values() if "resource_tracker" not in cmd]


def test_the_cli_forks_its_workers_and_a_process_with_other_threads_spawns_them(corpus: Path, tmp_path: Path) -> None:
    """Forked workers skip the interpreter and imports a spawned one pays; a process running a
    second thread spawns them (a fork would copy locks that thread may hold). Same bytes."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("OPENBLAS_NUM_THREADS", None)
    lines = {}
    for how, head in (("plain", [sys.executable, "-m", "augexport"]), ("threaded", [sys.executable, "-c", _THREADED])):
        cmd = head + _cmd(corpus, tmp_path / how)[3:]
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        lines[how] = _worker_command_lines(proc)
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    parent = " ".join([sys.executable, "-m", "augexport", *_cmd(corpus, tmp_path / "plain")[3:]]) + " "
    assert lines["plain"] and all(cmd == parent for cmd in lines["plain"]), lines["plain"]
    assert lines["threaded"] and all("spawn_main" in cmd for cmd in lines["threaded"]), lines["threaded"]
    assert shard_hashes(tmp_path / "plain") == shard_hashes(tmp_path / "threaded")


def test_workers_are_forked_only_on_linux_from_a_single_threaded_process(monkeypatch: pytest.MonkeyPatch) -> None:
    from augexport import engine

    code = ("import os; os.environ['OPENBLAS_NUM_THREADS'] = '1'\n"
            "import threading, time\n"
            "from augexport.engine import worker_start_method as method\n"
            "alone = method()\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "print(alone, method())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.stdout.split() == ["fork", "spawn"]
    monkeypatch.setattr(engine.sys, "platform", "darwin")  # fork is unsafe there with no threads too
    assert engine.worker_start_method() == "spawn"


def test_a_worker_forked_while_workers_start_ignores_ctrl_c_holds_sigterm_and_shares_the_heap() -> None:
    """What a fork inside the start window hands the worker: SIGINT ignored, SIGTERM held back
    (init_worker resets and releases it), the main process's objects frozen out of the worker's
    garbage collector (collections there would copy the pages they share). The main process gets
    all three back afterwards."""
    import gc

    from augexport import engine

    read, write = os.pipe()
    with engine._workers_start_quiet(True):
        pid = os.fork()
        if pid == 0:  # the child reports and leaves at once
            held = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
            ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.write(write, f"{held} {ignored} {gc.get_freeze_count() > 0}".encode())
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        assert f.read().split() == ["True", "True", "True"]
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.getsignal(signal.SIGINT) is not signal.SIG_IGN and gc.get_freeze_count() == 0
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # a caller's own mask is put back as it was
    try:
        with engine._workers_start_quiet(True):
            pass
        assert signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    gc.freeze()  # a caller's own freeze (a pre-forking server's) is left as it is
    try:
        with engine._workers_start_quiet(True):
            pass
        assert gc.get_freeze_count() > 0  # (objects freed meanwhile leave it, so no exact count)
    finally:
        gc.unfreeze()


def test_a_forked_worker_takes_no_python_signal_handler_from_the_main_process(tmp_path: Path) -> None:
    """As a spawned worker: the caller's handlers (here SIGUSR1's and SIGTERM's) are not run in it."""
    import concurrent.futures as cf
    import multiprocessing as mp

    from augexport.pipeline import build_pipeline
    from augexport.worker import Job, init_worker
    from tests import worker_probe

    previous = {s: signal.signal(s, lambda *_: None) for s in (signal.SIGUSR1, signal.SIGTERM)}
    try:
        with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("fork"), initializer=init_worker,
                                    initargs=(Job(build_pipeline({}).to_spec(), 1), os.getpid(), 1)) as pool:
            got = pool.submit(worker_probe.signal_handlers, ["SIGUSR1", "SIGTERM", "SIGINT", "SIGPIPE"]).result()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    assert got == ["default", "default", "ignore", "ignore"]


_OPENCV_POOL = """
import os, sys
os.environ["OPENBLAS_NUM_THREADS"] = "1"
import cv2, numpy as np
from augexport import api, engine
cv2.setNumThreads(2)
cv2.warpAffine(np.zeros((800, 800, 3), np.uint8), np.eye(2, 3), (800, 800))  # its pool's threads start
before = len(os.listdir("/proc/self/task"))
methods, start = [], engine.worker_start_method
engine.worker_start_method = lambda: methods.append(start()) or methods[-1]
if __name__ == "__main__":
    api.export(sys.argv[1], sys.argv[2], workers=2, overrides={"copies": 1, "stages": [{"keras": {"rotation_range": 9}}]})
    print(before, methods, cv2.getNumThreads())
"""


def test_opencv_threads_in_the_main_process_are_stopped_so_the_workers_fork(corpus: Path, tmp_path: Path) -> None:
    """A dry run (or a caller) that used OpenCV's thread pool leaves threads that would make the
    workers spawn: the pool is stopped while the workers run, and OpenCV's thread count put back."""
    script = tmp_path / "opencv_pool.py"
    script.write_text(_OPENCV_POOL)
    res = subprocess.run([sys.executable, str(script), str(corpus), str(tmp_path / "out")], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["2", "['fork']", "2"]


@pytest.mark.parametrize("interpreter", ["/nonexistent/python", "exits"])
def test_workers_that_cannot_start_are_named_as_such_not_as_a_write_error(tmp_path: Path, interpreter: str) -> None:
    """A worker interpreter that is missing or exits at once (a user who may not run it, a broken
    environment) is a run failure about the workers, exit 1, never a 'write error in OUT'."""
    if interpreter == "exits":
        fake = tmp_path / "python"
        fake.write_text("#!/bin/sh\nexit 3\n")
        fake.chmod(0o755)
        interpreter = str(fake)
    src = make_class_folder(tmp_path / "src", {"a": 40, "b": 40}, size=(16, 16))
    code = f"import multiprocessing.spawn as s; s.set_executable({interpreter!r}); {_THREADED}"  # spawned
    res = subprocess.run([sys.executable, "-c", code, "export", str(src), str(tmp_path / "out"), "--workers", "2",
                          "--batch-size", "4"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 1, res.stderr
    # (with no interpreter at all, multiprocessing's own exit handlers may still complain after it)
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "write error" not in errors[0], res.stderr
    assert "worker process" in errors[0] and "--resume" in errors[0], res.stderr


def test_a_script_without_a_main_guard_is_told_to_add_one(tmp_path: Path) -> None:
    """Spawned workers import the caller's script again; an unguarded top-level export in it killed
    every worker, reported as 'out of memory, or killed by a signal'."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import threading, time\n"
        "import numpy as np\n"
        "import augexport\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # another thread: workers spawn\n"
        "x = np.zeros((8, 6, 6), np.uint8)\n"
        f"augexport.export_arrays(x, np.arange(8) % 2, {str(tmp_path / 'out')!r}, workers=2, batch_size=1)\n")
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path, timeout=240,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode != 0
    assert 'unguarded.py calls augexport at its top level' in res.stderr, res.stderr[-2000:]
    assert "augexport was called while a worker process imported the main script" in res.stderr  # the worker's own


def test_the_guard_hint_is_never_given_to_the_cli_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI spawns its workers too (tfds:, object stores, TensorFlow loaded): a worker killed
    there is not an unguarded script."""
    import types

    from augexport.engine import _unguarded_script_hint

    class Spawn:
        def get_start_method(self) -> str:
            return "spawn"

    script = types.ModuleType("__main__")
    script.__file__ = "/home/me/train.py"
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert "train.py calls augexport at its top level" in _unguarded_script_hint(Spawn())
    script.__file__ = "/venv/bin/augexport"  # the console script
    assert _unguarded_script_hint(Spawn()) == ""
    script.__file__ = str(ROOT / "augexport" / "__main__.py")  # python -m augexport
    script.__spec__ = types.SimpleNamespace(name="augexport.__main__")
    assert _unguarded_script_hint(Spawn()) == ""
