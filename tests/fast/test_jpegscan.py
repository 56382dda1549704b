"""The gateway proves a JPEG whole by its markers (roadsigns.gateway.jpegscan), not by decoding it.

Each case is checked against what the detector itself can do with the bytes (OpenCV's decode):
whatever the walk lets through, the detector reads; every cut of the stream is refused.
"""

from __future__ import annotations

import io
import random

import cv2
import numpy as np
import pytest
from PIL import Image

from roadsigns.detector.service import ImageUnreadable, decode_image
from roadsigns.gateway.jpegscan import jpeg_damage
from roadsigns.gateway.uploads import UploadRejected, validate_image
from roadsigns.shared.settings import Settings
from tests.conftest import PHOTOS

PHOTO = (PHOTOS / "00330.jpg").read_bytes()


def _saved(mode: str = "RGB", **options: object) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(PHOTO)).convert(mode).save(out, format="JPEG", **options)
    return out.getvalue()


def _with_thumbnail() -> bytes:
    """A JPEG whose EXIF carries a complete JPEG thumbnail, end-of-image marker and all."""
    thumb = io.BytesIO()
    Image.open(io.BytesIO(PHOTO)).resize((160, 94)).save(thumb, format="JPEG")
    exif = Image.Exif()
    exif[0x010F] = "roadsigns test camera"
    body = _saved(exif=exif.tobytes())
    # An APP1 segment of our own after the EXIF one, holding the thumbnail's whole stream.
    app = b"\xff\xe1" + (len(thumb.getvalue()) + 2).to_bytes(2, "big") + thumb.getvalue()
    return body[:2] + app + body[2:]


def _restart_markers() -> bytes:
    image = cv2.imdecode(np.frombuffer(PHOTO, np.uint8), cv2.IMREAD_COLOR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_RST_INTERVAL, 4])
    assert ok
    return bytes(buf.tobytes())


WHOLE = {
    "camera": PHOTO,
    "progressive": _saved(progressive=True),
    "grey": _saved("L"),
    "exif thumbnail": _with_thumbnail(),
    "restart markers": _restart_markers(),
    "trailer after the end": PHOTO + b"SEFT phone trailer" * 40,
}


@pytest.mark.parametrize("name", list(WHOLE))
def test_a_whole_stream_passes_and_the_detector_reads_it(name: str) -> None:
    data = WHOLE[name]
    assert jpeg_damage(data) is None
    assert decode_image(data).shape[:2] == (800, 1360)


@pytest.mark.parametrize("name", list(WHOLE))
def test_every_cut_is_refused(name: str) -> None:
    data = WHOLE[name]
    end = data.rindex(b"\xff\xd9") if name != "trailer after the end" else len(PHOTO) - 2
    cuts = [2, 3, 20, 400, end - 1, end, end + 1, *random.Random(7).sample(range(4, end), 40)]
    for cut in cuts:
        assert jpeg_damage(data[:cut]) is not None, cut


def test_the_thumbnails_end_is_not_taken_for_the_photos() -> None:
    data = _with_thumbnail()
    thumbnail_end = data.index(b"\xff\xd9") + 2  # inside the APP1 segment
    assert thumbnail_end < len(data) // 10
    assert jpeg_damage(data[: thumbnail_end + 1000]) is not None


def test_broken_structure_is_named() -> None:
    assert "start-of-image" in str(jpeg_damage(b"\x89PNG\r\n\x1a\n"))
    assert "before any image data" in str(jpeg_damage(b"\xff\xd8\xff\xd9"))
    assert "impossible length" in str(jpeg_damage(b"\xff\xd8\xff\xe0\x00\x01"))
    assert "segment was expected" in str(jpeg_damage(PHOTO[:2] + b"\x00" + PHOTO[2:]))


def test_the_gateway_refuses_a_cut_jpeg_without_decoding_it() -> None:
    with pytest.raises(UploadRejected) as refused:
        validate_image(PHOTO[: len(PHOTO) * 2 // 3], Settings())
    assert refused.value.status == 400
    assert "truncated" in refused.value.message
    accepted = validate_image(PHOTO, Settings())
    assert (accepted.data, accepted.content_type, accepted.width, accepted.height) == (PHOTO, "image/jpeg", 1360, 800)


def test_what_the_walk_cannot_see_fails_the_job_at_the_detector() -> None:
    """A stream whole in structure whose Huffman tables are zeroed: the gateway lets it through,
    and the detector's decode refuses it with a reason (the job fails; nothing is left stuck)."""
    data = bytearray(PHOTO)
    dht = data.index(b"\xff\xc4")
    length = int.from_bytes(data[dht + 2 : dht + 4], "big")
    data[dht + 5 : dht + 2 + length] = bytes(length - 3)
    assert jpeg_damage(bytes(data)) is None
    with pytest.raises(ImageUnreadable):
        decode_image(bytes(data))
