"""Image-file sink: `OUT/images/SPLIT/<class>/<stem>__c<copy>.<ext>` (names: `augexport.naming`).

Files are written into `OUT/images/.tmp-SPLIT/` and the folder is renamed into place by
`finalize()`, so a replaced split keeps its old images until the new run is complete, and an
interrupted run leaves nothing under the final name (the temporary folder is kept for `--resume`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..naming import IMAGES, IMAGES_MARKER, SplitNames, is_temporary
from ..outdir import OutDir


@dataclass(frozen=True)
class ImageLayout:
    """How the image files of a split are named (`naming.image_file`): what Beam workers need to
    write them; small and picklable."""

    class_names: list[str]
    collisions: frozenset[str]
    ext: str


class ImageFolderWriter:
    """Writes into the temporary folder; `finalize()` moves it into place. Beam workers make their
    own writer with `drop_partial=False` (the launcher's writer already cleaned the folder)."""

    def __init__(self, outdir: OutDir, names: SplitNames, run_key: str = "", drop_partial: bool = True) -> None:
        self.outdir, self.names, self.run_key = outdir, names, run_key
        outdir.require_dir_or_absent(names.temp_images_dir)
        self._prefix = f"{names.images_dir}/"
        self._dirs: set[str] = set()
        if drop_partial:
            self._drop_partial_files()

    def _drop_partial_files(self) -> None:
        """A file cut short by a kill during an earlier life of this (resumed) run."""
        temp = self.names.temp_images_dir
        for cls in self.outdir.entries(temp) if self.outdir.is_dir(temp) else ():
            if self.outdir.is_dir(f"{temp}/{cls}"):
                for name in self.outdir.entries(f"{temp}/{cls}"):
                    if is_temporary(name):
                        self.outdir.unlink(f"{temp}/{cls}/{name}")

    def write(self, relpath: str, data: bytes) -> None:
        """Write one image; `relpath` is `images/SPLIT/<class>/<file>` (from `naming.image_file`)."""
        assert relpath.startswith(self._prefix), relpath
        folder, _, name = relpath[len(self._prefix):].rpartition("/")
        target = f"{self.names.temp_images_dir}/{folder}"
        if target not in self._dirs:
            self.outdir.makedirs(target)
            self._dirs.add(target)
        self.outdir.put(f"{target}/{name}", data)  # complete or absent under its name

    def finalize(self) -> None:
        """Move the finished folder to `images/SPLIT` (replacing an older one)."""
        temp, final = self.names.temp_images_dir, self.names.images_dir
        self.outdir.makedirs(temp)
        self.outdir.write_atomic(f"{temp}/{IMAGES_MARKER}", (self.run_key + "\n").encode())
        self.outdir.require_dir_or_absent(final)
        self.outdir.remove(final)
        self.outdir.rename(temp, final)
        self.outdir.fsync(IMAGES)

    def abort(self) -> None:
        self.outdir.remove(self.names.temp_images_dir)
        if self.outdir.is_dir(IMAGES) and not self.outdir.entries(IMAGES):
            self.outdir.remove(IMAGES)


def images_owner(outdir: OutDir, folder: str) -> str | None:
    """The identity key recorded in a finished image folder (None if absent or unreadable)."""
    try:
        return outdir.read_bytes(f"{folder}/{IMAGES_MARKER}", limit=4096).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
