"""OUT on disk: every write, rename, delete and lock augexport makes in OUT goes through `OutDir`.

OUT's contents are untrusted: a file planted there must never make augexport read, write or
delete anything outside OUT. So names are relative paths checked component by component,
files are opened with O_NOFOLLOW (a symlink is never written through), temporaries are created
with O_EXCL after removing whatever had their name, directories augexport writes into must be
real directories (not links), and deletes never follow links. One writer at a time: `lock()`
takes an exclusive `flock` on OUT/.augexport.lock and names the holder when it is taken.

`OutDir` is also the contract: `objstore.RemoteOutDir` implements the same methods for OUT in an
object store (`s3://`, `gs://`, any fsspec URL), and `objstore.open_outdir` picks one for a location.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import UsageError
from .naming import LOCK, is_plain_name, temp_name

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class UnsafePath(OSError):
    """A name in OUT that is a link, not a plain relative name, or not the kind of file expected."""


def _parts(name: str) -> list[str]:
    parts = name.split("/")
    if not all(is_plain_name(p) for p in parts):
        raise UnsafePath(errno.EINVAL, f"not a plain relative name inside OUT: {name!r}")
    return parts


class OutDir:
    """OUT, a local directory. Names are POSIX-style relative paths (`images/train/cat/x.jpg`)."""

    remote = False  # True for object stores: no links, no atomic rename, no fsync

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root.joinpath(*_parts(name))

    @property
    def location(self) -> str:
        """OUT as a string every process can open again (`open_outdir(location)`)."""
        return str(self.root)

    def where(self, name: str) -> str:
        """`name` for messages: the full path (or URL)."""
        return str(self.path(name))

    def __str__(self) -> str:
        return str(self.root)

    def prepare(self) -> None:
        """Check, before any work, that OUT can be used; a local folder needs nothing here (the run
        creates it), an object store checks reach, credentials and bucket (`RemoteOutDir`)."""

    # -- looking -----------------------------------------------------------------------------
    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.lstat(self.path(name))
        except FileNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self.lstat(name) is not None

    def is_file(self, name: str) -> bool:
        st = self.lstat(name)
        return st is not None and stat.S_ISREG(st.st_mode)

    def is_dir(self, name: str) -> bool:
        st = self.lstat(name)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def is_link(self, name: str) -> bool:
        st = self.lstat(name)
        return st is not None and stat.S_ISLNK(st.st_mode)

    def size(self, name: str) -> int:
        st = os.lstat(self.path(name))
        return st.st_size

    def entries(self, name: str = "") -> list[str]:
        folder = self.path(name) if name else self.root
        try:
            return sorted(os.listdir(folder))
        except FileNotFoundError:
            return []

    def require_dir_or_absent(self, name: str) -> None:
        """A folder augexport will write into must be a real directory, never a link or a file."""
        parts = _parts(name)
        for k in range(1, len(parts) + 1):
            sub = "/".join(parts[:k])
            st = self.lstat(sub)
            if st is None:
                return
            if not stat.S_ISDIR(st.st_mode):
                kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise UsageError(f"OUT {self.root}: {sub} is {kind}; augexport never writes through links or "
                                 "into files: remove it (or choose another OUT)")

    # -- reading -----------------------------------------------------------------------------
    def open_read(self, name: str) -> BinaryIO:
        """Open a regular file for reading without following a link at its name."""
        # O_NONBLOCK: opening a FIFO planted in OUT would otherwise wait for a writer forever
        fd = os.open(self.path(name), os.O_RDONLY | _NOFOLLOW | _CLOEXEC | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UnsafePath(errno.EINVAL, f"{name} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def read_bytes(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open_read(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise UnsafePath(errno.EFBIG, f"{name} is larger than {limit} bytes")
        return data

    def sha256(self, name: str) -> str:
        h = hashlib.sha256()
        with self.open_read(name) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()

    # -- writing -----------------------------------------------------------------------------
    def makedirs(self, name: str) -> None:
        self.require_dir_or_absent(name)
        self.path(name).mkdir(parents=True, exist_ok=True)

    def open_new(self, name: str) -> BinaryIO:
        """Create `name` afresh for writing: whatever had the name (a stale temporary, a planted
        link) is removed first, and the file is created exclusively, never through a link."""
        path = self.path(name)
        self.unlink(name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
        return os.fdopen(fd, "wb")

    def close_new(self, f: BinaryIO) -> None:
        """Finish a file from `open_new`: flush, fsync, close."""
        f.flush()
        os.fsync(f.fileno())
        f.close()

    def discard_new(self, f: BinaryIO) -> None:
        """Close a file from `open_new` that is given up (its name is unlinked by the caller). On a
        full disk the close's flush fails again; the file is closed all the same, and its name
        must still go."""
        with contextlib.suppress(OSError):
            f.close()

    def put(self, name: str, data: bytes) -> None:
        """A file complete or absent under `name` (temporary sibling, rename), without fsync:
        for the many small image files, whose folder is made durable once when it is finalized."""
        parent, _, base = name.rpartition("/")
        tmp = f"{parent}/{temp_name(base)}" if parent else temp_name(base)
        with self.open_new(tmp) as f:
            f.write(data)
        self.rename(tmp, name)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Write via a temporary sibling, fsync, rename: `name` is complete or absent."""
        parent, _, base = name.rpartition("/")
        tmp = f"{parent}/{temp_name(base)}" if parent else temp_name(base)
        try:
            with self.open_new(tmp) as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self.rename(tmp, name)
        except OSError:  # a full disk: no half-written sibling stays behind
            with contextlib.suppress(OSError):
                self.unlink(tmp)
            raise

    def rename(self, src: str, dst: str) -> None:
        """Atomic rename inside OUT (a link at `dst` is replaced, never followed)."""
        os.replace(self.path(src), self.path(dst))

    def unlink(self, name: str) -> None:
        """Remove a file or link (a link itself, never its target); a directory is left alone."""
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise UnsafePath(errno.EISDIR, f"{name} is a directory") from None

    def remove(self, name: str) -> None:
        """Remove a file, link or directory tree; links inside are removed, never followed."""
        st = self.lstat(name)
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(self.path(name))  # rmtree never follows links (it unlinks them)
        else:
            self.unlink(name)

    def remove_root(self) -> None:
        """Remove OUT itself (a run that created it and failed before writing anything)."""
        shutil.rmtree(self.root, ignore_errors=True)

    def fsync(self, name: str = "") -> None:
        """Make renames inside a folder durable (no-op where directories cannot be opened)."""
        try:
            fd = os.open(self.path(name) if name else self.root, os.O_RDONLY | _CLOEXEC)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    # -- one writer at a time ------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on OUT for the whole run; exit 2 naming the holder if another
        augexport run has it. The lock file is removed on release, so acquiring re-checks that
        the locked file is still the one at the name (another run may have removed it meanwhile)."""
        path = self.path(LOCK)
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                os.unlink(path)  # a link planted at the lock's name: removed, never followed
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise UsageError(f"OUT {self.root}: {LOCK} is not a regular file (a FIFO or device at the lock's "
                                 "name); remove it and run again")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise UsageError(f"OUT {self.root} is being written by another augexport run ({holder}); wait for "
                                 "it to end or choose another OUT") from None
            try:
                same = os.fstat(fd).st_ino == os.lstat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            os.write(fd, json.dumps({"pid": os.getpid(), "started": started}).encode())
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"pid {int(info['pid'])}, started {str(info['started'])[:40]}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


def write_file_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """A single file the user named outside OUT (`preview -o`, `tta-merge -o`): written via a
    temporary sibling and renamed, so it is complete or unchanged."""
    path = Path(path)
    folder = OutDir(path.parent)
    folder.write_atomic(path.name, data)
