"""Write the hostile-upload corpus and its manifest.json into this folder.

Run once (`.venv/bin/python tests/data/hostile/make_corpus.py`) and commit the output; it is
deterministic (fixed random seed) and needs only Pillow, numpy and tests/data/photos.

Each manifest case says what to send (multipart parts: form field, corpus file, filename,
content type; or a generated giant body) and what the gateway must answer: a 4xx status
with words its `detail` must contain, or {"accepted": true} with the upright size the
job must report (and, for full-size photos, the sign that must be found where).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent
PHOTOS = HERE.parent / "photos"
RNG = np.random.default_rng(6)

# 00330.jpg (1360x800) has a speed limit 50 sign (class 2): gt.txt `00330.jpg;1050;313;1116;381;2`,
# inclusive corners, so as a half-open box:
SIGN_BOX = (1050, 313, 1117, 382)
SIGN_CLASS = 2

CASES: list[dict] = []


def save(name: str, data: bytes) -> str:
    (HERE / name).write_bytes(data)
    return name


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def case(name: str, parts: list[dict], expect: dict, note: str) -> None:
    CASES.append({"name": name, "note": note, "parts": parts, "expect": expect})


def file_part(path: str, filename: str | None = None, content_type: str | None = None, field: str = "file") -> dict:
    return {
        "field": field,
        "path": path,
        "filename": filename if filename is not None else path,
        "content_type": content_type,
    }


def refused(name: str, data: bytes, content_type: str, status: int, words: str, note: str) -> None:
    case(
        name,
        [file_part(save(name, data), content_type=content_type)],
        {"status": status, "detail_contains": words},
        note,
    )


def accepted(name: str, data: bytes, content_type: str, size: tuple[int, int], note: str, **extra) -> None:
    expect = {"accepted": True, "width": size[0], "height": size[1], **extra}
    case(name, [file_part(save(name, data), content_type=content_type)], expect, note)


# --- building blocks --------------------------------------------------------------------


def png_chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_header_only(width: int, height: int, bit_depth: int = 8, colour: int = 0) -> bytes:
    """A PNG that declares a size but carries (almost) no pixels: a decompression-bomb header."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_chunks(data: bytes) -> list[tuple[int, bytes]]:
    """(offset, type) of each chunk."""
    pos, out = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out.append((pos, data[pos + 4 : pos + 8]))
        pos += 12 + length
    return out


def jpeg_sof_offset(data: bytes) -> int:
    """Offset of the first SOF0/SOF2 marker."""
    return min(i for i in (data.find(b"\xff\xc0"), data.find(b"\xff\xc2")) if i > 0)


def jpeg_scan_offset(data: bytes) -> int:
    """Offset of the first byte of entropy-coded data (just after the SOS segment)."""
    sos = data.find(b"\xff\xda")
    (length,) = struct.unpack(">H", data[sos + 2 : sos + 4])
    return sos + 2 + length


def tiff_header(width: int, height: int) -> bytes:
    """A little-endian baseline TIFF header for an 8-bit grey strip that is not there."""
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, 8 + 2 + 12 * 9 + 4),
        (277, 3, 1, 1),
        (278, 4, 1, height),
        (279, 4, 1, 16),
    ]
    ifd = (
        struct.pack("<H", len(entries))
        + b"".join(
            struct.pack("<HHII", tag, typ, n, value) if typ == 4 else struct.pack("<HHIHH", tag, typ, n, value, 0)
            for tag, typ, n, value in entries
        )
        + struct.pack("<I", 0)
    )
    return b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 16


def tiff_rgb16(img: Image.Image) -> bytes:
    """An uncompressed 16-bit-per-channel RGB TIFF (Pillow cannot write one), from an 8-bit image."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint16) * 257  # 0..255 -> 0..65535
    pixels = rgb.astype("<u2").tobytes()
    width, height = img.size
    n_entries = 10
    bits_at = 8 + 2 + 12 * n_entries + 4
    data_at = bits_at + 6
    entries = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 3, bits_at),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (273, 4, 1, data_at),
        (277, 3, 1, 3),
        (278, 4, 1, height),
        (279, 4, 1, len(pixels)),
        (284, 3, 1, 1),
    ]
    ifd = struct.pack("<H", n_entries)
    for tag, typ, n, value in entries:
        if typ == 3 and n == 1:
            ifd += struct.pack("<HHIHH", tag, typ, n, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, n, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<HHH", 16, 16, 16) + pixels


PHOTO = Image.open(PHOTOS / "00330.jpg").convert("RGB")  # 1360x800
SMALL = PHOTO.resize((340, 200), Image.Resampling.LANCZOS)
TINY = PHOTO.resize((96, 56), Image.Resampling.LANCZOS)
SMALL_JPEG = encode(SMALL, "JPEG", quality=80)
SMALL_PNG = encode(PHOTO.resize((120, 70)), "PNG")


def main() -> None:
    for old in HERE.iterdir():
        if old.name not in ("make_corpus.py", "__pycache__"):
            old.unlink()

    # --- not images at all ----------------------------------------------------------------
    not_image = "not an image"
    refused("empty.jpg", b"", "image/jpeg", 400, "empty", "zero bytes")
    refused(
        "text.jpg",
        b"This is a text file wearing a .jpg name.\n" * 30,
        "image/jpeg",
        415,
        not_image,
        "plain text named .jpg",
    )
    refused(
        "page.html",
        b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>\n",
        "text/html",
        415,
        not_image,
        "an HTML page",
    )
    refused(
        "drawing.svg",
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
        b'<circle cx="32" cy="32" r="30" fill="red"/></svg>\n',
        "image/svg+xml",
        415,
        not_image,
        "SVG: vector, not a supported raster format",
    )
    refused(
        "document.pdf",
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]"
        b"/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n",
        "application/pdf",
        415,
        not_image,
        "a PDF",
    )
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("photo.jpg", SMALL_JPEG)
    refused("archive.zip", zipped.getvalue(), "application/zip", 415, not_image, "a ZIP holding a JPEG")
    refused("random.png", RNG.bytes(4096), "image/png", 415, not_image, "random bytes named .png")
    refused("elf.jpg", b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "image/jpeg", 415, not_image, "an executable header")

    # --- truncated and corrupt JPEG -------------------------------------------------------
    jpeg = SMALL_JPEG
    sof, scan = jpeg_sof_offset(jpeg), jpeg_scan_offset(jpeg)
    refused("jpeg_soi_only.jpg", jpeg[:3], "image/jpeg", 415, "header is corrupt", "only the SOI marker")
    refused(
        "jpeg_cut_in_header.jpg",
        jpeg[: sof - 10],
        "image/jpeg",
        400,
        "corrupt",
        "cut inside the header segments, before the frame header",
    )
    refused("jpeg_cut_in_sof.jpg", jpeg[: sof + 6], "image/jpeg", 400, "corrupt", "cut inside the frame header")
    refused(
        "jpeg_cut_mid_scan.jpg",
        jpeg[: scan + (len(jpeg) - scan) // 2],
        "image/jpeg",
        400,
        "truncated",
        "cut halfway through the compressed scan",
    )
    refused(
        "jpeg_cut_after_sos.jpg",
        jpeg[: scan + 16],
        "image/jpeg",
        400,
        "truncated",
        "complete headers, 16 bytes of scan",
    )
    refused(
        "jpeg_garbage_after_soi.jpg",
        b"\xff\xd8" + RNG.bytes(4000),
        "image/jpeg",
        415,
        "header is corrupt",
        "SOI marker followed by random bytes",
    )
    zero_size = bytearray(jpeg[: scan + 2000])
    zero_size[sof + 5 : sof + 9] = b"\x00\x00\x00\x00"  # height 0, width 0
    refused("jpeg_zero_size.jpg", bytes(zero_size), "image/jpeg", 415, "header is corrupt", "frame header says 0x0")
    huge = bytearray(jpeg[: scan + 2000])
    huge[sof + 5 : sof + 9] = struct.pack(">HH", 65000, 65000)
    refused("jpeg_huge_declared.jpg", bytes(huge), "image/jpeg", 413, "pixels", "frame header says 65000x65000")

    # --- truncated and corrupt PNG --------------------------------------------------------
    png = SMALL_PNG
    chunks = dict((kind, pos) for pos, kind in reversed(png_chunks(png)))
    idat = chunks[b"IDAT"]
    refused(
        "png_cut_in_signature.png", png[:5], "image/png", 415, "header is corrupt", "first 5 bytes of the signature"
    )
    refused("png_cut_in_ihdr.png", png[:20], "image/png", 400, "corrupt", "cut inside IHDR")
    refused(
        "png_cut_mid_idat.png",
        png[: idat + (len(png) - idat) // 2],
        "image/png",
        400,
        "truncated",
        "cut halfway through the pixel data",
    )
    bad_crc = bytearray(png)
    bad_crc[29:33] = b"\xde\xad\xbe\xef"  # IHDR's CRC (8 signature + 4 length + 4 type + 13 body)
    refused("png_bad_ihdr_crc.png", bytes(bad_crc), "image/png", 415, "header is corrupt", "IHDR checksum wrong")
    garbled = bytearray(png)
    garbled[idat + 40 : idat + 240] = RNG.bytes(200)  # deflate stream garbled, CRC now stale too
    refused("png_garbled_idat.png", bytes(garbled), "image/png", 400, "corrupt", "deflate data overwritten")
    no_idat = png[: chunks[b"IHDR"] + 25] + png_chunk(b"IEND", b"")
    refused("png_no_idat.png", no_idat, "image/png", 400, "corrupt", "IHDR then IEND, no pixel data")
    refused(
        "gif_truncated.gif",
        encode(SMALL.convert("P"), "GIF")[:300],
        "image/gif",
        400,
        "truncated",
        "GIF cut inside its pixel data",
    )

    # --- decompression bombs and huge declared dimensions ---------------------------------
    refused(
        "bomb_png_30000x30000.png",
        png_header_only(30000, 30000),
        "image/png",
        413,
        "pixels",
        "a 200-byte PNG that declares 30000x30000 = 900 megapixels",
    )
    bomb = encode(Image.new("1", (8000, 8000)), "PNG", optimize=True)  # a real one: 64 Mpx in a few kB
    refused("bomb_png_real_8000x8000.png", bomb, "image/png", 413, "pixels", "a real 1-bit 8000x8000 PNG")
    refused(
        "thin_over_limit.png",
        png_header_only(2_000_000, 16),
        "image/png",
        413,
        "pixels",
        "2,000,000x16 = 32 Mpx, just over the 30 Mpx limit",
    )
    gif = (
        b"GIF89a"
        + struct.pack("<HH", 65535, 65535)
        + b"\x00\x00\x00"
        + b",\x00\x00\x00\x00"
        + struct.pack("<HH", 65535, 65535)
        + b"\x00\x02\x02D\x01\x00;"
    )
    refused("gif_huge_declared.gif", gif, "image/gif", 413, "pixels", "GIF screen and frame 65535x65535")
    bmp_header = struct.pack("<2sIHHI", b"BM", 14 + 40 + 16, 0, 0, 14 + 40) + struct.pack(
        "<IiiHHIIiiII", 40, 10000, 8000, 1, 24, 0, 0, 2835, 2835, 0, 0
    )
    refused(
        "bmp_huge_declared.bmp", bmp_header + b"\x00" * 16, "image/bmp", 413, "pixels", "BMP header 10000x8000 = 80 Mpx"
    )
    refused(
        "tiff_huge_declared.tif", tiff_header(100000, 100000), "image/tiff", 413, "pixels", "TIFF header 100000x100000"
    )
    vp8x = struct.pack("<I", 0)[:1] + b"\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    webp = b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8x)) + b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    refused(
        "webp_huge_declared.webp",
        webp,
        "image/webp",
        400,
        "corrupt",
        "WebP VP8X canvas 16384x16384 without any image data: libwebp refuses it as corrupt",
    )

    # --- too small ------------------------------------------------------------------------
    at_least = "at least"
    refused("tiny_1x1.png", encode(Image.new("RGB", (1, 1), "red"), "PNG"), "image/png", 422, at_least, "1x1")
    refused("tiny_15x15.jpg", encode(TINY.resize((15, 15)), "JPEG"), "image/jpeg", 422, at_least, "15x15")
    refused("tiny_15x400.png", encode(Image.new("L", (15, 400)), "PNG"), "image/png", 422, at_least, "one side 15")

    # --- valid but unusual images: accepted and processed, upright size reported -----------
    accepted(
        "thin_20000x16.png",
        encode(Image.new("RGB", (20000, 16), (90, 120, 160)), "PNG"),
        "image/png",
        (20000, 16),
        "extremely wide and thin, within the pixel limit",
    )
    accepted(
        "exactly_16x16.png", encode(TINY.resize((16, 16)), "PNG"), "image/png", (16, 16), "the smallest allowed size"
    )
    gray16 = Image.fromarray((np.asarray(SMALL.convert("L"), dtype=np.uint16) * 257).astype(np.uint16))
    accepted(
        "gray16.png",
        encode(gray16.resize((170, 100)), "PNG"),
        "image/png",
        (170, 100),
        "16-bit greyscale PNG (mode I;16)",
    )
    accepted("rgb16.tif", tiff_rgb16(TINY), "image/tiff", TINY.size, "16-bit-per-channel RGB TIFF, uncompressed")
    accepted(
        "palette_transparent.png",
        encode(SMALL.quantize(64), "PNG", transparency=0),
        "image/png",
        SMALL.size,
        "palette PNG with a transparent colour",
    )
    la = Image.merge("LA", (SMALL.convert("L"), Image.linear_gradient("L").resize(SMALL.size)))
    accepted("gray_alpha.png", encode(la.resize((170, 100)), "PNG"), "image/png", (170, 100), "LA PNG")
    rgba = SMALL.resize((170, 100)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    accepted("rgba.png", encode(rgba, "PNG"), "image/png", (170, 100), "RGBA PNG with a gradient alpha")
    frames = [TINY.rotate(angle).convert("P") for angle in (0, 10, 20)]
    accepted(
        "animated.gif",
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "image/gif",
        TINY.size,
        "3-frame animated GIF: the first frame is used",
    )
    accepted("photo.webp", encode(SMALL, "WEBP", quality=60), "image/webp", SMALL.size, "lossy WebP")
    accepted("photo.bmp", encode(TINY, "BMP"), "image/bmp", TINY.size, "24-bit BMP")
    accepted(
        "photo.tif",
        encode(TINY, "TIFF", compression="tiff_deflate"),
        "image/tiff",
        TINY.size,
        "deflate-compressed TIFF",
    )
    accepted(
        "progressive.jpg",
        encode(SMALL, "JPEG", quality=70, progressive=True),
        "image/jpeg",
        SMALL.size,
        "progressive JPEG",
    )
    accepted(
        "gray8.jpg", encode(SMALL.convert("L"), "JPEG", quality=70), "image/jpeg", SMALL.size, "8-bit greyscale JPEG"
    )
    accepted(
        "trailing_garbage.jpg",
        SMALL_JPEG + b"\x00garbage after the EOI marker" * 10,
        "image/jpeg",
        SMALL.size,
        "bytes after the end-of-image marker are ignored",
    )
    sign = {"class_id": SIGN_CLASS, "box": list(SIGN_BOX)}
    accepted(
        "cmyk.jpg",
        encode(PHOTO.convert("CMYK"), "JPEG", quality=40),
        "image/jpeg",
        PHOTO.size,
        "CMYK JPEG (Adobe, inverted) of 00330.jpg: the sign must still be found",
        sign=sign,
    )

    # EXIF-rotated copies of 00330.jpg: the pixels are stored turned, and the Orientation tag says how
    # to turn them back. Upright, each is the original photo, so the sign must be found where
    # gt.txt has it, in a 1360x800 image. The manifest records the stored box too; the test
    # turns it with the orientation and must land on the ground truth.
    width, height = PHOTO.size
    left, top, right, bottom = SIGN_BOX
    stored = {
        # orientation: (Pillow transpose from upright to stored, the sign's box in the stored pixels)
        3: (Image.Transpose.ROTATE_180, (width - right, height - bottom, width - left, height - top)),
        6: (Image.Transpose.ROTATE_90, (top, width - right, bottom, width - left)),
        8: (Image.Transpose.ROTATE_270, (height - bottom, left, height - top, right)),
    }
    for orientation, (turn, box) in stored.items():
        exif = Image.Exif()
        exif[0x0112] = orientation
        pixels = PHOTO.transpose(turn)
        accepted(
            f"exif_orientation_{orientation}.jpg",
            encode(pixels, "JPEG", quality=55, exif=exif.tobytes()),
            "image/jpeg",
            PHOTO.size,
            f"00330.jpg stored turned, EXIF Orientation={orientation}",
            orientation=orientation,
            stored_size=list(pixels.size),
            stored_box=list(box),
            sign=sign,
        )

    # --- valid JPEG, odd request metadata: must work, we sniff the bytes ---------------------
    small = save("small.jpg", SMALL_JPEG)
    size = {"accepted": True, "width": SMALL.size[0], "height": SMALL.size[1]}
    for name, content_type in (
        ("octet-stream", "application/octet-stream"),
        ("text-plain", "text/plain"),
        ("claims-png", "image/png"),
        ("no-content-type", None),
    ):
        case(
            f"content-type {name}",
            [file_part(small, content_type=content_type)],
            size,
            f"a valid JPEG sent as {content_type}",
        )
    for label, filename in (
        ("path traversal", "../../../../tmp/roadsigns-owned.jpg"),
        ("windows path", "..\\..\\windows\\system32\\evil.jpg"),
        ("unicode", "Verkehrszeichen-straße-знак-標識-🚸.jpg"),
        ("300 characters", "a" * 296 + ".jpg"),
        ("quote and newline", 'x"; name="file2.jpg'),
        ("NUL byte", "photo\x00.jpg"),
        ("no filename", ""),
    ):
        case(
            f"filename {label}",
            [file_part(small, filename=filename, content_type="image/jpeg")],
            size,
            f"filename {label}: stored only as metadata (at most 255 characters), never as a path",
        )

    # --- malformed requests ----------------------------------------------------------------
    missing = {"status": 422, "detail_contains": "missing form field 'file'"}
    case(
        "wrong form field",
        [file_part(small, field="image", content_type="image/jpeg")],
        missing,
        "the photo in a field named 'image'",
    )
    case(
        "missing file field",
        [{"field": "callback_url", "text": "https://example.com/hook"}],
        missing,
        "a form with only a text field",
    )
    case(
        "file field is text",
        [{"field": "file", "text": "not a file"}],
        {"status": 422, "detail_contains": "must be an uploaded file"},
        "'file' sent as a text field",
    )
    case(
        "several files",
        [file_part(small, content_type="image/jpeg"), file_part("photo.webp", content_type=None)],
        {"status": 422, "detail_contains": "one file"},
        "two parts named 'file'",
    )
    case(
        "callback_url with a NUL byte",
        [file_part(small, content_type="image/jpeg"), {"field": "callback_url", "text": "http://example.com/\x00hook"}],
        {"status": 422, "detail_contains": "callback_url"},
        "a control character in the callback URL",
    )
    case(
        "not multipart",
        [{"raw": '{"file": "x"}', "content_type": "application/json"}],
        missing,
        "a JSON body instead of a form",
    )
    case(
        "giant multipart with Content-Length",
        [{"giant_bytes": 12 * 1024 * 1024, "chunked": False}],
        {"status": 413, "detail_contains": "limited to"},
        "12 MiB body: refused from its Content-Length, unread",
    )
    case(
        "giant multipart chunked",
        [{"giant_bytes": 12 * 1024 * 1024, "chunked": True}],
        {"status": 413, "detail_contains": "limit"},
        "12 MiB body with no Content-Length: refused while read",
    )
    case(
        "file just over the limit",
        [{"giant_bytes": 8 * 1024 * 1024 + 100 * 1024, "chunked": False}],
        {"status": 413, "detail_contains": "limit"},
        "8.1 MiB part: under the body check, over the file limit",
    )

    manifest = {
        "about": "Hostile uploads for POST /jobs; see make_corpus.py. Limits assumed: 8 MiB, 30 Mpx, sides >= 16.",
        "cases": CASES,
    }
    (HERE / "manifest.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
