"""OUT in an object store (`s3://`, `gs://`, any fsspec URL): the `OutDir` contract over fsspec.

Object stores have no directories, links, fsync or atomic rename, but every object appears whole
or not at all (one PUT, or a multipart upload completed at close). So:

- every write is one object written under its name (`put`, `write_atomic`: one PUT each);
- `rename` is copy then delete, so a final name appears only as a complete copy of the temporary
  (shards are renamed only when the run finalizes, the manifest last, exactly as on disk); a
  folder (the image folder) is copied object by object with its marker (`naming.IMAGES_MARKER`)
  last, so a folder without the marker is known to be incomplete;
- folders are prefixes: `makedirs` only checks that no object sits where a folder is needed;
- names are still validated component by component (`outdir._parts`); there are no links to
  follow, so O_NOFOLLOW has no counterpart and needs none;
- the lock is an object `OUT/.augexport.lock` created with a conditional PUT (`If-None-Match: *`
  on S3: only one creator wins; fsspec's `mode="create"`, which other stores may implement as a
  check then a write, i.e. best effort). A lock left by a run killed on this host (its pid is gone)
  is taken over (on S3 by a conditional overwrite `If-Match: <etag>`); a lock from another host is
  reported with its holder and the object to delete if that run is gone.

Listing caches are off (`fs.open_fs`): Beam workers and other runs change OUT behind our back.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

from .errors import UsageError
from .fs import (
    READ_ONLY_SCHEMES,
    cat_range,
    explain,
    is_url,
    join,
    local_path,
    open_fs,
    require_location,
    scheme,
)
from .naming import IMAGES_MARKER, LOCK
from .outdir import OutDir, UnsafePath, _parts

T = TypeVar("T")


def open_outdir(location: str | os.PathLike[str]) -> OutDir:
    """OUT for a location: a local directory (`OutDir`) or an object-store prefix (`RemoteOutDir`)."""
    text = str(location)
    return RemoteOutDir(text) if is_url(text) else OutDir(local_path(text))


def _io(call: Callable[[], T]) -> T:
    """Storage errors as OSError (what the run reports as a write error, exit 1)."""
    try:
        return call()
    except (OSError, UsageError):
        raise
    except Exception as exc:  # botocore/aiohttp/google errors are not OSErrors
        raise OSError(errno.EIO, explain(exc)) from exc


_GLOB = ("*", "?", "[", "]")  # fsspec expands these in copy, rm and rename, even in a literal key


class RemoteOutDir(OutDir):
    """OUT at a URL; names are the same POSIX-style relative names as for `OutDir`."""

    remote = True

    def __init__(self, url: str) -> None:
        require_location(url, f"OUT {url}")
        if any(c in url for c in _GLOB):
            raise UsageError(f"OUT {url} holds one of {' '.join(_GLOB)}: the store's client reads them as a pattern "
                             "in copies and deletes, which would then reach keys outside OUT; accepted: a prefix "
                             "without them")
        self.url = url.rstrip("/")
        self.fs, self.base = open_fs(self.url, f"OUT {self.url}")
        self.root = self.url  # type: ignore[assignment]  # a URL, never a local Path

    def _full(self, name: str) -> str:
        return "/".join([self.base, *_parts(name)]) if name else self.base

    def path(self, name: str) -> str:  # type: ignore[override]
        return self.where(name)

    @property
    def location(self) -> str:
        return self.url

    def where(self, name: str) -> str:
        return join(self.url, *_parts(name))

    def __str__(self) -> str:
        return self.url

    def prepare(self) -> None:
        """Check, before any work, that OUT can be used: reachable with the environment's
        credentials, its bucket exists, no object sits at OUT itself. UsageError otherwise."""
        try:
            kind = self._kind("")
            if kind is None and hasattr(self.fs, "split_path"):
                bucket = self.fs.split_path(self.base)[0]
                if not self.fs.exists(bucket):
                    self.fs.info(bucket)  # raises the reason (missing, denied, no credentials)
                    raise FileNotFoundError(bucket)
        except FileNotFoundError:
            raise UsageError(f"OUT {self.url}: bucket {self.base.split('/')[0]!r} does not exist (augexport never "
                             "creates buckets: create it, or check the name and AWS_ENDPOINT_URL)") from None
        except Exception as exc:  # every storage failure here is the user's URL or environment
            reason = exc.strerror if isinstance(exc, OSError) and exc.errno == errno.EIO and exc.strerror \
                else explain(exc)  # _io has explained it already
            raise UsageError(f"OUT {self.url}: {reason}") from None
        if kind == "file":
            raise UsageError(f"OUT {self.url} exists and is an object, not a folder (prefix)")

    # -- looking -----------------------------------------------------------------------------
    def _kind(self, name: str) -> str | None:
        """"file", "directory" (a prefix with objects under it) or None."""
        try:
            info = _io(lambda: self.fs.info(self._full(name)))
        except FileNotFoundError:
            return None
        return "file" if info.get("type") == "file" else "directory"

    def lstat(self, name: str) -> os.stat_result | None:
        raise NotImplementedError("object stores have no stat; use exists/is_file/is_dir/size")

    def size(self, name: str) -> int:
        return int(_io(lambda: self.fs.size(self._full(name))))

    def exists(self, name: str) -> bool:
        return self._kind(name) is not None

    def is_file(self, name: str) -> bool:
        return self._kind(name) == "file"

    def is_dir(self, name: str) -> bool:
        return self._kind(name) == "directory"

    def is_link(self, name: str) -> bool:
        return False  # object stores have no links

    def entries(self, name: str = "") -> list[str]:
        full = self._full(name)
        try:
            found = _io(lambda: self.fs.ls(full, detail=False))
        except FileNotFoundError:
            return []
        names = {p.rstrip("/").rpartition("/")[2] for p in found if p.rstrip("/") != full}
        return sorted(n for n in names if n)

    def require_dir_or_absent(self, name: str) -> None:
        parts = _parts(name)
        for k in range(1, len(parts) + 1):
            sub = "/".join(parts[:k])
            if self._kind(sub) == "file":
                raise UsageError(f"OUT {self.url}: {sub} is an object where augexport needs a folder (prefix): "
                                 "remove it (or choose another OUT)")

    # -- reading -----------------------------------------------------------------------------
    def open_read(self, name: str) -> BinaryIO:
        if self._kind(name) != "file":
            raise FileNotFoundError(errno.ENOENT, f"{self.where(name)} is not an object")
        return _io(lambda: self.fs.open(self._full(name), "rb"))

    def read_bytes(self, name: str, limit: int = 64 << 20) -> bytes:
        data = _io(lambda: cat_range(self.fs, self._full(name), 0, limit + 1))
        if len(data) > limit:
            raise UnsafePath(errno.EFBIG, f"{name} is larger than {limit} bytes")
        return data

    def sha256(self, name: str) -> str:
        h = hashlib.sha256()
        with self.open_read(name) as f:
            for chunk in iter(lambda: _io(lambda: f.read(8 << 20)), b""):
                h.update(chunk)
        return h.hexdigest()

    # -- writing -----------------------------------------------------------------------------
    def makedirs(self, name: str) -> None:
        self.require_dir_or_absent(name)  # prefixes need no creating

    def open_new(self, name: str) -> BinaryIO:
        """An object written on close (one PUT, or a multipart upload completed at close)."""
        return _io(lambda: self.fs.open(self._full(name), "wb"))

    def close_new(self, f: BinaryIO) -> None:
        _io(f.close)

    def discard_new(self, f: BinaryIO) -> None:
        """Abort the upload; the object never appears (closing would upload it)."""
        with contextlib.suppress(Exception):
            f.discard()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            f.closed = True  # type: ignore[misc]  # fsspec files upload when garbage-collected unclosed

    def put(self, name: str, data: bytes) -> None:
        _io(lambda: self.fs.pipe_file(self._full(name), data))

    def write_atomic(self, name: str, data: bytes) -> None:
        self.put(name, data)

    def rename(self, src: str, dst: str) -> None:
        """Copy then delete. A folder: every object copied, its marker last; then the originals
        deleted, the marker first. So a folder holding its marker is complete at every moment, the
        copy and the original alike: what `resume.adopt_images` relies on after a kill."""
        s, d = self._full(src), self._full(dst)
        if self._kind(src) != "directory":
            _io(lambda: self.fs.copy(s, d))
            _io(lambda: self.fs.rm_file(s))
            return
        found = sorted(_io(lambda: self.fs.find(s)))
        found.sort(key=lambda p: p.rpartition("/")[2] == IMAGES_MARKER)  # stable: marker last
        for p in found:
            _io(lambda p=p: self.fs.copy(p, d + p[len(s):]))
        for p in [*found[-1:], *found[:-1]] if found and found[-1].endswith(f"/{IMAGES_MARKER}") else found:
            _io(lambda p=p: self.fs.rm_file(p))

    def unlink(self, name: str) -> None:
        """Delete one object (deleting a key never touches others; a missing one is fine)."""
        try:
            _io(lambda: self.fs.rm_file(self._full(name)))
        except FileNotFoundError:
            pass

    def remove(self, name: str) -> None:
        kind = self._kind(name)
        if kind == "directory":
            _io(lambda: self.fs.rm(self._full(name), recursive=True))
        elif kind == "file":
            self.unlink(name)

    def remove_root(self) -> None:
        """Nothing to do: a prefix without objects does not exist."""

    def fsync(self, name: str = "") -> None:
        """Nothing to do: an object is durable once its PUT returned."""

    # -- one writer at a time ------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """The lock object, created only if absent (see the module docstring); removed on release
        if it is still ours."""
        proto = scheme(self.url)
        if proto in READ_ONLY_SCHEMES:  # the lock is the first write: nothing has been written yet
            raise UsageError(f"OUT {self.url}: {proto}:// is read-only (it can be read by inspect, or be a SOURCE, "
                             "--config or --labels); accepted for writing: a local path, s3://, gs:// or another "
                             "writable fsspec URL")
        path = self._full(LOCK)
        me = _holder_record()
        self._acquire(path, json.dumps(me).encode())
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                if json.loads(self.fs.cat_file(path)).get("token") == me["token"]:
                    self.fs.rm_file(path)

    def _acquire(self, path: str, body: bytes) -> None:
        for attempt in (0, 1):
            try:
                _io(lambda: self.fs.pipe_file(path, body, mode="create"))
                return
            except FileExistsError:
                pass
            etag, holder = self._read_lock(path)
            if attempt == 0 and (holder is None or _gone_here(holder)):
                if holder is not None and self._take_over(path, etag, body):
                    return
                continue
            who = _describe(holder)
            raise UsageError(f"OUT {self.url} is being written by another augexport run ({who}); wait for it to "
                             f"end or choose another OUT. If that run is gone (e.g. killed on another machine), "
                             f"delete the lock object {self.where(LOCK)}")

    def _read_lock(self, path: str) -> tuple[str | None, dict[str, Any] | None]:
        try:
            info = self.fs.info(path)
            data = json.loads(self.fs.cat_file(path)[:4096] or b"{}")
            return info.get("ETag"), data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None, None
        except Exception:  # unreadable: a holder we cannot describe, never taken over
            return None, {}

    def _take_over(self, path: str, etag: str | None, body: bytes) -> bool:
        """Replace a dead run's lock. S3: a conditional overwrite of exactly that object (two runs
        racing for it cannot both win); elsewhere: delete, then the create retried by the caller."""
        if "s3" in _protocols(self.fs) and etag:
            try:
                _io(lambda: self.fs.pipe_file(path, body, IfMatch=etag))
                return True
            except OSError:
                return False  # someone else took it: the retry reports the new holder
        with contextlib.suppress(FileNotFoundError):
            _io(lambda: self.fs.rm_file(path))
        return False


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = getattr(fs, "protocol", ())
    return (proto,) if isinstance(proto, str) else tuple(proto)


def _stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat after the command name (Linux): field 0 is the state, 19 the start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields if len(fields) > 19 else None
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    fields = _stat_fields(pid)
    return fields[19].decode() if fields else None


def _holder_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "pid_start": _start_time(os.getpid()),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "token": uuid.uuid4().hex}


def _gone_here(holder: dict[str, Any]) -> bool:
    """The holder ran on this host and its process no longer exists (killed, crashed)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    fields = _stat_fields(pid)
    if fields and fields[0] in (b"Z", b"X"):
        return True  # killed and not yet reaped (e.g. `timeout -s KILL` leaves it to init): it holds nothing
    start = holder.get("pid_start")
    return start is not None and fields is not None and fields[19].decode() != start  # the pid was reused


def _describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "holder unknown"
    return (f"pid {holder.get('pid')} on host {str(holder.get('host'))[:80]}, "
            f"started {str(holder.get('started'))[:40]}")
