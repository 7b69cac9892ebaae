"""Can augexport write where the user pointed it? OUT and `-o FILE`, checked before any work.

Every reason a target cannot be used is a UsageError (exit 2) naming the target and why: a parent
that is a file, a dangling symbolic link, a name too long, a read-only or otherwise unwritable
place (`/proc`, `/sys`, a read-only mount, missing permission). Writability is tested by creating
and removing a probe file, because permission bits do not tell (root ignores them, a read-only
mount or a proc filesystem refuses whatever the bits say).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .errors import UsageError
from .naming import temp_name

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _lstat(path: Path, what: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:  # ENAMETOOLONG, ENOTDIR (a parent is a file), ELOOP, EACCES
        raise UsageError(f"{what} {path}: {os_reason(path, exc)}") from None


def os_reason(path: Path, exc: OSError) -> str:
    """Why `path` could not be looked at, in words (a parent that is a file, a name too long)."""
    if exc.errno == errno.ENOTDIR:
        parent = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if parent is not None:
            return f"{parent} is a file, not a directory"
    if exc.errno == errno.ENAMETOOLONG:
        return "the name is too long for the file system (at most 255 bytes per name)"
    return exc.strerror or str(exc)


def resolved(path: str | os.PathLike[str], what: str) -> Path:
    """`Path.resolve()`, with a loop of symbolic links (RuntimeError on Python 3.11) or a name the
    system refuses a UsageError naming `what` and the path."""
    try:
        return Path(path).resolve()
    except RuntimeError:
        raise UsageError(f"{what} {path}: a loop of symbolic links") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: {os_reason(Path(path), exc)}") from None


def probe_writable(folder: Path, what: str) -> None:
    """Create and remove a probe file in `folder`; UsageError when that is refused."""
    probe = folder / temp_name(f"augexport-probe-{os.getpid()}")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    except OSError as exc:
        raise UsageError(f"{what}: {folder} is not writable ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def make_out_dir(out: Path) -> Path | None:
    """Create OUT (and its parents) when missing, after checking that it can be; the topmost folder
    this call created (OUT or a parent of it), None when OUT was there. An existing OUT must be a
    writable directory."""
    st = _lstat(out, "OUT")
    if st is not None and os.path.islink(out) and not out.exists():
        raise UsageError(f"OUT {out} is a symbolic link to {os.readlink(out)}, which does not exist; remove the "
                         "link or choose another OUT")
    if st is not None:
        if not out.is_dir():
            raise UsageError(f"OUT {out} exists and is not a directory")
        probe_writable(out, f"OUT {out}")
        return None
    existing = next(p for p in out.absolute().parents if _lstat(p, "OUT") is not None)
    if not existing.is_dir():
        raise UsageError(f"OUT {out} cannot be created: {existing} is a file, not a directory")
    probe_writable(existing, f"OUT {out} cannot be created")
    try:
        out.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"OUT {out} cannot be created: {os_reason(out, exc)}") from None
    return existing / out.absolute().relative_to(existing).parts[0]


def remove_made_parents(out: Path, top: Path) -> None:
    """After OUT itself was removed: the empty folders above it up to `top`, which `make_out_dir`
    created for it (a failed run leaves the filesystem as it found it)."""
    folder = out.absolute().parent
    while folder == top or top in folder.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty (something else wrote there since), or gone
            return
        folder = folder.parent


def check_output_file(path: Path, flag: str) -> None:
    """A single file the user names (`-o grid.png`): its folder exists and is writable, the name fits."""
    if _lstat(path, flag) is not None and path.is_dir():
        raise UsageError(f"{flag} {path} is a directory; give a file name")
    parent = path.parent
    st = _lstat(parent, flag)
    if st is None or not parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {parent} does not exist")
    if len(os.fsencode(temp_name(path.name))) > 255:
        raise UsageError(f"{flag} {path}: the name is too long for the file system (at most 250 bytes)")
    probe_writable(parent, f"{flag} {path}")


def check_outside_source(path: Path, source: str, flag: str) -> None:
    """A file the user names is not inside a local SOURCE folder (SOURCE is read-only)."""
    if not os.path.isdir(source):  # tfds:, npz:, npy:, URLs: nothing local to protect
        return
    src, dst = resolved(source, "SOURCE"), resolved(path, flag)
    if src in dst.parents:
        raise UsageError(f"{flag} {path} is inside SOURCE {source}; SOURCE is read-only: choose another file")

