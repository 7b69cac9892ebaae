"""Pixel arrays and encoded records between the worker processes and the main process through
shared memory.

The device path moves every deferred copy's pixels to the main process and the finished pixels
back to a worker, and every task sends its framed records to the main process; through the pool's
pipes each array or record is pickled, copied through the kernel in 64 KiB reads and unpickled,
serially in the main process (~0.25 ms per 224x224 RGB copy and direction, ~0.2 ms per 100 KB
record, measured here). Instead the sender copies a task's arrays (or bytes) into one POSIX
shared-memory segment and sends (segment, offset, size) references; the receiver copies them out
and unlinks the segment.
Every process of an export shares multiprocessing's resource tracker, which removes a segment a
crash left behind once they are all gone. Segments are tagged with their export's PID namespace,
main process and run (`augexport-NS-PID-RUN-...`): a pool that stops early removes its run's
unread results (`remove_owner`), and where the tracker was killed too (`kill -9` of the process
group) the next export removes the segments of main processes of its namespace that no longer
exist (`sweep`). Where /dev/shm has too little room for a segment (a
container's 64 MiB default) the arrays travel by pickle as before.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_ROOM = 4  # a segment is made only while /dev/shm has this many times its size free
PREFIX = "augexport-"
SHM_DIR = "/dev/shm"
_owner: str | None = None  # this process's segments' tag; a worker is told its export's (`set_owner`)


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def owner_for(pid: int, run: str = "0") -> str:
    """The tag of segments made for main process `pid` (in this PID namespace) and its run."""
    return f"{_pid_namespace()}-{pid}-{run}"


def new_owner() -> str:
    """A tag for one export's segments: PID namespace, main process, a token of the run."""
    return owner_for(os.getpid(), secrets.token_hex(4))


def set_owner(tag: str) -> None:
    """Name this process's segments with `tag` (a worker: its export's, from `new_owner`)."""
    global _owner
    _owner = tag


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _ours() -> list[str]:
    try:
        return [n for n in os.listdir(SHM_DIR) if n.startswith(PREFIX)]
    except OSError:
        return []


def _unlink(names: list[str]) -> int:
    """Unlink segments through SharedMemory, so that this process's resource tracker, which may
    know them (an export's processes share one), forgets them too instead of warning at exit."""
    from multiprocessing import shared_memory

    gone = 0
    for name in names:
        try:
            shm = shared_memory.SharedMemory(name=name)
        except (OSError, ValueError):
            continue
        shm.close()
        try:
            shm.unlink()
            gone += 1
        except OSError:
            pass
    return gone


def sweep() -> int:
    """Remove the segments of exports whose main process is gone; returns how many. Only this PID
    namespace's: /dev/shm may be shared with containers whose pids this process cannot see."""
    ns = str(_pid_namespace())
    dead = []
    for name in _ours():
        parts = name[len(PREFIX):].split("-")
        if len(parts) >= 3 and parts[0] == ns and parts[1].isdigit() and not _alive(int(parts[1])):
            dead.append(name)
    return _unlink(dead)


def remove_owner(tag: str) -> int:
    """Remove every segment tagged `tag`: a stopped pool's results that were never read."""
    return _unlink([n for n in _ours() if n.startswith(f"{PREFIX}{tag}-")])


@dataclass(frozen=True)
class SharedPixels:
    """A uint8 array in a shared-memory segment (picklable; a few bytes)."""

    segment: str
    offset: int
    shape: tuple[int, ...]


def _room(nbytes: int) -> bool:
    try:
        stat = os.statvfs(SHM_DIR)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize >= _ROOM * nbytes


def _segment(total: int, owner: str | None) -> Any:
    """A new segment of `total` bytes, or None (nothing to share, no room, or /dev/shm refuses)."""
    from multiprocessing import shared_memory

    if total == 0 or not _room(total):
        return None
    tag = owner or _owner or owner_for(os.getpid())
    try:
        return shared_memory.SharedMemory(f"{PREFIX}{tag}-{secrets.token_hex(8)}", create=True, size=total)
    except OSError:
        return None


def share(arrays: Sequence[np.ndarray], owner: str | None = None) -> list[SharedPixels | np.ndarray]:
    """References to copies of `arrays` in one new segment (the arrays themselves when there is no
    room, or nothing to share); `owner`: the segment's tag (default: this process's)."""
    shm = _segment(sum(int(a.nbytes) for a in arrays), owner)
    if shm is None:
        return list(arrays)
    refs: list[SharedPixels | np.ndarray] = []
    offset = 0
    try:
        for a in arrays:
            view = np.ndarray(a.shape, np.uint8, shm.buf, offset)
            view[...] = a
            del view  # no exported buffer may be left when the segment is closed
            refs.append(SharedPixels(shm.name, offset, tuple(a.shape)))
            offset += int(a.nbytes)
    finally:
        shm.close()
    return refs


@dataclass(frozen=True)
class SharedBytes:
    """A bytes object in a shared-memory segment (picklable; a few bytes)."""

    segment: str
    offset: int
    size: int


def share_bytes(blobs: Sequence[bytes]) -> list[SharedBytes | bytes]:
    """`share` for bytes: references to copies of `blobs` in one new segment, or the blobs."""
    shm = _segment(sum(len(b) for b in blobs), None)
    if shm is None:
        return list(blobs)
    refs: list[SharedBytes | bytes] = []
    offset = 0
    try:
        for b in blobs:
            shm.buf[offset : offset + len(b)] = b
            refs.append(SharedBytes(shm.name, offset, len(b)))
            offset += len(b)
    finally:
        shm.close()
    return refs


def _read_out(items: Sequence[Any], kind: type, read: Callable[[Any, Any], Any]) -> list[Any]:
    """`items` with each reference of `kind` replaced by `read(segment buffer, ref)`; each segment
    is opened once, read, then unlinked."""
    from multiprocessing import shared_memory

    out = list(items)
    by_segment: dict[str, list[int]] = {}
    for k, item in enumerate(items):
        if isinstance(item, kind):
            by_segment.setdefault(item.segment, []).append(k)
    for name, where in by_segment.items():
        shm = shared_memory.SharedMemory(name=name)
        try:
            for k in where:
                out[k] = read(shm.buf, out[k])
        finally:
            shm.close()
            shm.unlink()
    return out


def fetch_bytes(items: Sequence[SharedBytes | bytes]) -> list[bytes]:
    """The bytes behind `items` (bytes pass through); each segment is read once, then unlinked."""
    return _read_out(items, SharedBytes, lambda buf, ref: bytes(buf[ref.offset : ref.offset + ref.size]))


def fetch(items: Sequence[SharedPixels | np.ndarray]) -> list[np.ndarray]:
    """The arrays behind `items` (arrays pass through); each segment is read once, then unlinked."""
    return _read_out(items, SharedPixels, lambda buf, ref: np.ndarray(ref.shape, np.uint8, buf, ref.offset).copy())
