"""Upload validation: everything that can be refused is refused here, before a job exists.

Pillow reads the header first (size and pixel limits, before any pixel is decompressed). A
JPEG that a worker can read as-is (8-bit RGB or grey, no EXIF rotation: what cameras and
phones send) is then proven whole by walking its markers to the end-of-image (jpegscan.py),
without decoding it: the detector decodes it anyway, and the walk costs 0.13 ms where even a
1/8-scale decode cost 2.9. Anything else is decoded whole (truncation) under a memory budget;
a PNG that a worker can read as-is is stored untouched, and the rest is normalised to an
upright 8-bit RGB PNG so workers see what users see. The photo's EXIF GPS position is read
here too, once, before normalising drops the EXIF.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
import time
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from roadsigns.gateway.jpegscan import jpeg_damage
from roadsigns.shared import exifgps
from roadsigns.shared.exifgps import Fix
from roadsigns.shared.settings import Settings

# We enforce our own pixel limit before decoding; keep Pillow's bomb check as a backstop.
Image.MAX_IMAGE_PIXELS = None


class UploadRejected(Exception):
    """A 4xx answer: `status` and a message a person can act on."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class AcceptedImage:
    data: bytes
    content_type: str
    width: int
    height: int
    fix: Fix | None = None  # where and when it was taken, from EXIF GPS


_PASSTHROUGH = {"JPEG": "image/jpeg", "PNG": "image/png"}

# Leading bytes of the formats we read: a file that starts like one of them but that Pillow
# cannot open is a damaged image, and the message says so.
_SIGNATURES = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG", "PNG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


class DecodeBudget:
    """Bytes of decoded pixels that this process's concurrent uploads may hold at once.

    A truncated 130 kB PNG can declare 6000x6600 pixels: Pillow allocates the whole image
    (4 bytes a pixel) before it finds the data missing, so eight at once took the gateway past
    its memory limit. Each decode first reserves what it may allocate (the image, and a copy
    for normalising), waiting while others hold the budget; one larger than the whole budget
    runs alone. A wait longer than `timeout_s` is a 503 with Retry-After.
    """

    def __init__(self, total_bytes: int, timeout_s: float = 30.0) -> None:
        self.total, self.timeout_s = total_bytes, timeout_s
        self.used = 0
        self._cond = threading.Condition()

    def reserve(self, nbytes: int) -> int:
        nbytes = min(nbytes, self.total)
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            while self.used + nbytes > self.total:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy("the gateway is busy decoding other uploads; try again in a few seconds")
                self._cond.wait(left)
            self.used += nbytes
        return nbytes

    def release(self, nbytes: int) -> None:
        with self._cond:
            self.used -= nbytes
            self._cond.notify_all()


class Busy(UploadRejected):
    def __init__(self, message: str) -> None:
        super().__init__(503, message)
        self.headers = {"Retry-After": "5"}


_budget: DecodeBudget | None = None
_budget_lock = threading.Lock()


def decode_budget(settings: Settings) -> DecodeBudget:
    global _budget
    with _budget_lock:
        if _budget is None or _budget.total != settings.decode_budget_bytes:
            _budget = DecodeBudget(settings.decode_budget_bytes)
        return _budget


# Pillow allocates an image in 16 MB blocks; once glibc has freed such a block its dynamic
# mmap threshold rises and later blocks come from the calling thread's heap arena, which keeps
# them when freed. With 16 threads, each would keep the largest image it ever decoded. After a
# large decode, hand the freed pages of every arena back to the system.
_TRIM_ABOVE = 32 * 1024 * 1024
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if ctypes.util.find_library("c") else None


def _return_freed_memory() -> None:
    trim = getattr(_LIBC, "malloc_trim", None)
    if trim is not None:
        trim(0)


def _decode_cost(img: Image.Image) -> int:
    """What decoding (and normalising) may allocate: Pillow keeps 4 bytes a pixel for every
    8-bit mode and for 16/32-bit ones, and normalising makes a second image."""
    width, height = img.size
    return width * height * 4 * 2


def _looks_like(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def validate_image(data: bytes, settings: Settings) -> AcceptedImage:
    if not data:
        raise UploadRejected(400, "the uploaded file is empty")
    if len(data) > settings.max_upload_bytes:
        raise UploadRejected(413, f"the file is {len(data)} bytes; the limit is {settings.max_upload_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        kind = _looks_like(data)
        hint = f": it starts like a {kind} image but its header is corrupt" if kind else ""
        raise UploadRejected(
            415, f"the file is not an image in a supported format (JPEG, PNG, WebP, BMP, TIFF, GIF){hint}"
        ) from None
    except Exception as exc:  # Pillow raises assorted errors on hostile headers
        raise UploadRejected(400, f"the image header is corrupt: {exc}") from None
    width, height = img.size
    if width * height > settings.max_pixels:
        raise UploadRejected(
            413, f"the image is {width}x{height} = {width * height} pixels; the limit is {settings.max_pixels} pixels"
        )
    if min(width, height) < settings.min_side:
        raise UploadRejected(
            422, f"the image is {width}x{height}; each side must be at least {settings.min_side} pixels"
        )
    if img.format == "JPEG" and img.mode in ("RGB", "L") and img.getexif().get(0x0112, 1) in (None, 1):
        return _whole_jpeg(img, data)  # getexif parses once; the EXIF is read again from its cache
    budget = decode_budget(settings)
    reserved = budget.reserve(_decode_cost(img))
    try:
        return _decode(img, data, width, height)
    finally:
        img.close()  # frees the pixels now, not when a traceback that holds the image goes
        if reserved >= _TRIM_ABOVE:
            _return_freed_memory()
        budget.release(reserved)


def _whole_jpeg(img: Image.Image, data: bytes) -> AcceptedImage:
    """A JPEG stored as it came: its structure proven whole, its EXIF (before the image data in
    a JPEG) read from the header Pillow already parsed."""
    damage = jpeg_damage(data)
    if damage is not None:
        raise UploadRejected(400, f"the image data is truncated or corrupt: {damage}")
    return AcceptedImage(data, "image/jpeg", img.width, img.height, exifgps.from_exif(img.getexif()))


def _decode(img: Image.Image, data: bytes, width: int, height: int) -> AcceptedImage:
    try:
        img.load()
    except Exception as exc:  # truncated or corrupt pixel data
        raise UploadRejected(400, f"the image data is truncated or corrupt: {exc}") from None
    exif = img.getexif()  # after load: a PNG may carry it after IDAT
    orientation = exif.get(0x0112, 1)
    fix = exifgps.from_exif(exif)
    if (
        img.format in _PASSTHROUGH
        and img.mode in ("RGB", "L")
        and orientation in (None, 1)
        and not getattr(img, "is_animated", False)
    ):
        return AcceptedImage(data, _PASSTHROUGH[img.format], width, height, fix)
    accepted = _normalise(img)
    accepted.fix = fix
    return accepted


def _normalise(img: Image.Image) -> AcceptedImage:
    """Upright, first frame, 8-bit RGB, as PNG."""
    try:
        img.seek(0)
    except EOFError:
        pass
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        img = background
    else:
        img = img.convert("RGB")
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)
    return AcceptedImage(out.getvalue(), "image/png", img.width, img.height)
