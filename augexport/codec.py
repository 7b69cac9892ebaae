"""Decode any image file into uint8 pixels the way a user expects, and encode pixels back.

Decoding applies EXIF orientation and converts every mode (palette, LA, RGBA, CMYK, 16-bit,
float, 1-bit) to RGB or 1-channel uint8. Alpha is dropped, as `tf.io.decode_image(channels=3)`
and Keras `load_img` do. Nothing here is random; nothing imports TensorFlow.
"""

from __future__ import annotations

import io
import re
import threading
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

from .errors import DecodeError
from .jpeg_stream import exif_orientation, keepable
from .resize import ResizeMode, keras_resize

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own bomb threshold (~0.25 GiB of RGBA); overridable

ENCODINGS = ("jpeg", "png")
EXTENSIONS = {"jpeg": "jpg", "png": "png"}


def _stable(exc: BaseException) -> str:
    """PIL's messages may name the in-memory file object it read (`<_io.BytesIO object at 0x..>`) or
    another object's address: drop them, so errors files are readable and reproducible (each line
    of errors-SPLIT.jsonl already names the source)."""
    text = re.sub(r"\s*<_io\.\w+ object(?: at 0x[0-9a-fA-F]+)?>", "", str(exc))
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """High-bit-depth integer or float grey -> uint8, never by clipping 16-bit values: the high
    byte (x >> 8), as `tf.io.decode_png(dtype=uint8)` and PIL's own 16-bit RGB path give."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    top = 65535 if arr.max(initial=0) > 255 or arr.dtype in (np.uint16, np.dtype(">u2")) else 255
    if top == 255:
        return np.clip(arr, 0, 255).astype(np.uint8)
    return (np.clip(arr, 0, 65535).astype(np.uint32) >> 8).astype(np.uint8)


def _pil_to_array(img: Image.Image, channels: int) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        grey = _to_uint8(np.asarray(img))
        if channels == 1:
            return grey[:, :, None]
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    elif mode == "PA":
        img = img.convert("RGBA")
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr)


def _jpeg_draft_scale(w: int, h: int, size: tuple[int, int] | None) -> int:
    """The DCT scale denominator PIL's `draft` picks for a request of (2W, 2H) (see JpegImagePlugin.draft)."""
    if size is None:
        return 1
    scale = min(w // (size[1] * 2), h // (size[0] * 2))
    return next((s for s in (8, 4, 2, 1) if scale >= s), 1)


def _decode_jpeg_fast(data: bytes, channels: int, size: tuple[int, int] | None, max_pixels: int,
                      fastdct: bool = False) -> np.ndarray | None:
    """libjpeg-turbo through simplejpeg (about 2x PIL's path) for plain JPEGs; None means "use PIL".

    Only taken where the result equals PIL's: YCbCr/RGB/grey colour, EXIF orientation 1, same DCT
    scale as PIL's `draft`, and never for colour -> grey (PIL converts with its own weights).
    """
    if data[:2] != b"\xff\xd8":
        return None
    import simplejpeg

    try:
        h, w, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if w * h > max_pixels or w < 1 or h < 1 or exif_orientation(data) != 1:
        return None
    if colorspace == "Gray":
        target = "GRAY" if channels == 1 else "RGB"
    elif colorspace in ("YCbCr", "RGB") and channels == 3:
        target = "RGB"
    else:
        return None
    scale = _jpeg_draft_scale(w, h, size)
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace=target, min_height=-(-h // scale), min_width=-(-w // scale),
                                     fastdct=fastdct)
    except ValueError:
        return None  # corrupt or truncated: PIL's path reports it
    return arr if arr.ndim == 3 else arr[:, :, None]


@dataclass(frozen=True)
class Decoder:
    """How an export turns file bytes (or raw array pixels) into pixels: channel count, target size
    and how to reach it, bomb limit."""

    channels: int = 3
    size: tuple[int, int] | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    mode: ResizeMode = ResizeMode()

    def __call__(self, data: bytes) -> np.ndarray:
        return decode(data, channels=self.channels, size=self.size, max_pixels=self.max_pixels, mode=self.mode)

    def keeping(self, data: bytes, quality: int) -> tuple[np.ndarray, bytes | None]:
        """The pixels, and the stream an unchanged copy stores instead of a JPEG re-encode at
        `quality` (`jpeg_stream.keepable`), or None."""
        pixels, own = _decode(data, self.channels, self.size, self.max_pixels, self.mode)
        return pixels, keepable(data, self.channels, quality, pixels.shape[:2]) if own else None

    def pixels(self, image: np.ndarray) -> np.ndarray:
        """Raw uint8 pixels (H, W, 1|3) from an array source: the channel conversion and the resize
        a decoded file gets, nothing else."""
        return fit(convert_channels(image, self.channels), self.size, self.mode)


def decode(data: bytes, *, channels: int = 3, size: tuple[int, int] | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS, mode: ResizeMode | None = None) -> np.ndarray:
    """Bytes of any PIL-readable image -> uint8 array (H, W, channels), optionally resized to size=(H, W).
    With Keras' resize modes a JPEG is decoded as `tf.io.decode_image` does (full size, libjpeg-turbo's
    INTEGER_FAST DCT, fancy upsampling: bit-identical on the fast path); the default stretch keeps
    the DCT-domain downscale and the accurate DCT."""
    return _decode(data, channels, size, max_pixels, mode)[0]


def _decode(data: bytes, channels: int, size: tuple[int, int] | None, max_pixels: int,
            mode: ResizeMode | None) -> tuple[np.ndarray, bool]:
    """`decode`, and whether the pixels are the file's own: a plain JPEG on the fast path, not resized."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    keras = mode is not None and mode.keras
    draft = None if keras else size
    arr = _decode_jpeg_fast(data, channels, draft, max_pixels, fastdct=keras)
    own = arr is not None and not keras
    if arr is None:
        arr = decode_pil(data, channels=channels, size=draft, max_pixels=max_pixels)
    out = fit(arr, size, mode)
    return out, own and out is arr


def fit(image: np.ndarray, size: tuple[int, int] | None, mode: ResizeMode | None = None) -> np.ndarray:
    """The resize step of decoding: none without a size, Keras' modes when set, else the stretch."""
    if size is None or image.shape[:2] == size:
        return image
    if mode is not None and mode.keras:
        return keras_resize(image, size, mode)
    return resize(image, size)


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 (H, W, 1|3) -> `channels`: grey replicated to RGB, RGB to grey with PIL's own weights
    (the conversion a decoded file gets)."""
    if image.shape[2] == channels:
        return image
    if channels == 3:
        return np.repeat(image, 3, axis=2)
    from PIL import Image

    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).convert("L"))[:, :, None]


def _open_pil(image_module: Any, data: bytes) -> Any:
    """Image.open without PIL's own bomb check, which refuses twice its MAX_IMAGE_PIXELS (~179 Mpx)
    whatever --max-pixels says: opening reads only the header, and --max-pixels is checked next."""
    with _PIL_LIMIT:  # a process-wide setting: one thread at a time changes and restores it
        previous = image_module.MAX_IMAGE_PIXELS
        image_module.MAX_IMAGE_PIXELS = None
        try:
            return image_module.open(io.BytesIO(data), formats=_raster_formats(image_module))
        finally:
            image_module.MAX_IMAGE_PIXELS = previous


_PIL_LIMIT = threading.Lock()


# PIL renders EPS with a Ghostscript subprocess where one is installed: untrusted PostScript must
# never reach an interpreter, whatever a file's extension says
NOT_DECODED = ("EPS",)


def _raster_formats(image_module: Any) -> list[str]:
    image_module.init()
    return [f for f in image_module.OPEN if f not in NOT_DECODED]


def decode_pil(data: bytes, *, channels: int = 3, size: tuple[int, int] | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The general path: any format, EXIF orientation, every mode; JPEGs DCT-downscaled with `draft`.
    (PIL is imported here, not at the top: plain JPEGs never need it, and a worker starts faster.)"""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = _open_pil(Image, data)
            w, h = img.size
            if w * h > max_pixels:
                raise DecodeError(f"image of {h}x{w} (HxW) = {w * h} pixels exceeds the limit of {max_pixels} "
                                  "(--max-pixels; a decompression bomb?)")
            if w < 1 or h < 1:
                raise DecodeError(f"image has no pixels ({w}x{h})")
            if size is not None and img.format == "JPEG" and img.mode in ("RGB", "L"):
                # DCT-domain downscale: decode at >= the target size, much faster for big photos.
                img.draft(img.mode, (size[1] * 2, size[0] * 2))
            img.load()
            img = ImageOps.exif_transpose(img)
            arr = _pil_to_array(img, channels)
    except DecodeError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DecodeError(f"not a readable image: {_stable(exc)}") from None
    except (OSError, ValueError, SyntaxError, IndexError, EOFError, TypeError, MemoryError) as exc:
        raise DecodeError(f"corrupt or truncated image: {type(exc).__name__}: {_stable(exc)}") from None
    return arr


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (H, W); area averaging when shrinking a lot so nothing aliases."""
    import cv2

    h, w = size
    shrink = image.shape[0] / h > 2 or image.shape[1] / w > 2
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if out.ndim == 2:
        out = out[:, :, None]
    return out


JPEG_MAX_SIDE = 65500  # libjpeg's limit on either side


def encode(image: np.ndarray, encoding: str = "jpeg", quality: int = 95) -> bytes:
    """uint8 (H, W, 1|3) -> JPEG (libjpeg-turbo via simplejpeg) or PNG (OpenCV) bytes."""
    if image.dtype != np.uint8:
        raise TypeError(f"encode expects uint8, got {image.dtype}")
    image = np.ascontiguousarray(image)
    if encoding == "jpeg":
        import simplejpeg

        if image.shape[2] == 1:
            return simplejpeg.encode_jpeg(image, quality=quality, colorspace="GRAY", colorsubsampling="Gray")
        return simplejpeg.encode_jpeg(image, quality=quality, colorspace="RGB", colorsubsampling="420")
    if encoding == "png":
        import cv2

        bgr = image if image.shape[2] == 1 else image[:, :, ::-1]
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise ValueError("PNG encoding failed")
        return buf.tobytes()
    raise ValueError(f"unknown encoding {encoding!r}; accepted: {', '.join(ENCODINGS)}")
