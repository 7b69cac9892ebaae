"""Third-party chatter kept off the user's terminal: a user sees augexport's own lines only, unless
`--verbose` (environment `AUGEXPORT_VERBOSE=1`, which the CLI flag sets).

Two sources of noise cannot be switched off by a setting that leaves results alone:
TensorFlow's C++ start-up lines (`WARNING: All log messages before absl::InitializeLog() ...`, the
oneDNN notice) are printed through absl before `TF_CPP_MIN_LOG_LEVEL` is read, and only
`TF_ENABLE_ONEDNN_OPTS=0` silences the oneDNN one, by changing which CPU kernels TF runs; Apache
Beam's worker processes log WARNING/INFO lines from their own interpreters. So `quiet_stderr()`
points file descriptor 2 at a pipe while TF is imported or a Beam pipeline runs (child processes
inherit it), keeps the last 64 KiB in memory (nothing is written to disk), and writes them back
when the block raises (not for a usage error), so a real failure still shows what the library said.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
from collections.abc import Iterator

from .errors import UsageError

VERBOSE_ENV = "AUGEXPORT_VERBOSE"
KEEP_BYTES = 64 << 10


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


_CLI = False  # the augexport command runs in this process: its terminal is augexport's alone


def mark_cli() -> None:
    global _CLI
    _CLI = True


def quiet_libraries() -> bool:
    """Whether third-party loggers may be turned down: in the CLI's own process, unless verbose.
    A library caller's logging configuration is its own."""
    return _CLI and not verbose()


def set_verbose(on: bool) -> None:
    """What `--verbose` does: third-party output is shown from here on (also in child processes)."""
    if on:
        os.environ[VERBOSE_ENV] = "1"


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """fd 2 (and so sys.stderr, logging, C++ libraries, child processes) into a bounded buffer for
    the block; replayed to the real stderr if the block raises. A no-op when verbose."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    tail: collections.deque[bytes] = collections.deque()
    reader = threading.Thread(target=_drain, args=(read_end, tail), daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    failed = False
    try:
        yield
    except UsageError:  # a user mistake: augexport's own message says all there is to say
        raise
    except BaseException:
        failed = True
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last writer in this process is gone: the reader sees EOF
        os.close(saved)
        reader.join(timeout=5)  # a child still holding the pipe must not hang the run
        if failed and tail:
            sys.stderr.flush()
            os.write(2, b"".join(tail))


def _drain(fd: int, tail: collections.deque[bytes]) -> None:
    size = 0
    with os.fdopen(fd, "rb", buffering=0) as f:
        while chunk := f.read(65536):
            tail.append(chunk)
            size += len(chunk)
            while size > KEEP_BYTES and len(tail) > 1:
                size -= len(tail.popleft())
