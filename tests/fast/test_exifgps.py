"""A photo's position from its EXIF GPS (roadsigns.shared.exifgps), and the gateway reading it once, at upload."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from roadsigns.gateway.uploads import validate_image
from roadsigns.shared.exifgps import GPS_IFD, Fix, from_exif, from_gps_ifd
from roadsigns.shared.settings import Settings
from tests.conftest import PHOTOS
from tests.geotag import geotag, gps_ifd

PHOTO = (PHOTOS / "00330.jpg").read_bytes()


def test_position_altitude_heading_and_time() -> None:
    when = datetime(2026, 5, 1, 12, 30, 15, tzinfo=UTC)
    fix = from_gps_ifd(gps_ifd(-33.856784, -151.215297, altitude_m=-4.5, heading_deg=270.25, taken_at=when))
    assert fix == Fix(-33.856784, -151.215297, -4.5, 270.25, when)
    assert fix.location() == {"lat": -33.856784, "lon": -151.215297, "altitude_m": -4.5, "heading_deg": 270.25}
    assert from_gps_ifd(gps_ifd(52.5, 13.4)).location() == {"lat": 52.5, "lon": 13.4}


def test_heading_falls_back_to_the_direction_of_travel() -> None:
    assert from_gps_ifd({**gps_ifd(52.5, 13.4), 14: "T", 15: IFDRational(90, 1)}).heading_deg == 90.0


@pytest.mark.parametrize(
    "gps",
    [
        {},
        {1: "N", 2: (IFDRational(52, 1), IFDRational(30, 1), IFDRational(0, 1))},  # no longitude
        {**gps_ifd(52.5, 13.4), 2: (IFDRational(52, 0), IFDRational(0, 1), IFDRational(0, 1))},  # x/0
        {**gps_ifd(52.5, 13.4), 2: (IFDRational(91, 1), IFDRational(0, 1), IFDRational(0, 1))},  # 91°
        {**gps_ifd(52.5, 13.4), 4: "thirteen"},
        {**gps_ifd(52.5, 13.4), 4: ()},
        {**gps_ifd(52.5, 13.4), 2: (IFDRational(-5, 1),)},
        {**gps_ifd(52.5, 13.4), 9: "V"},  # the receiver had no fix
        gps_ifd(0.0, 0.0),  # a camera's placeholder before its first fix
    ],
)
def test_no_usable_position_is_none(gps: dict) -> None:
    assert from_gps_ifd(gps) is None


def test_odd_extras_do_not_lose_the_position() -> None:
    gps = {**gps_ifd(52.5, 13.4), 6: "high", 17: IFDRational(1, 0), 29: "yesterday", 7: (1,)}
    assert from_gps_ifd(gps) == Fix(52.5, 13.4)


def test_a_corrupt_ifd_is_no_position() -> None:
    class Broken:
        def get_ifd(self, tag: int) -> dict:
            raise SyntaxError("not a TIFF IFD")

    assert from_exif(Broken()) is None


def test_the_gateway_reads_the_position_of_a_photo_stored_as_is() -> None:
    accepted = validate_image(geotag(PHOTO, 52.516275, 13.377704, heading_deg=90.0), Settings())
    assert accepted.content_type == "image/jpeg" and accepted.data[:2] == b"\xff\xd8"
    assert accepted.fix == Fix(52.516275, 13.377704, None, 90.0)
    assert validate_image(PHOTO, Settings()).fix is None


@pytest.mark.parametrize("fmt", ["rotated JPEG", "PNG"])
def test_the_gateway_reads_the_position_before_normalising(fmt: str) -> None:
    """A rotated JPEG is normalised to a PNG without EXIF: the position is read first. A PNG
    carries its EXIF in an eXIf chunk, which Pillow reads after the pixels."""
    img = Image.open(io.BytesIO(PHOTO))
    exif = Image.Exif()
    exif[GPS_IFD] = gps_ifd(48.858370, 2.294481, altitude_m=35.0)
    if fmt == "rotated JPEG":
        exif[0x0112] = 6
    out = io.BytesIO()
    img.save(out, format="JPEG" if fmt == "rotated JPEG" else "PNG", exif=exif)
    accepted = validate_image(out.getvalue(), Settings())
    assert accepted.content_type == "image/png"
    assert accepted.fix == Fix(48.85837, 2.294481, 35.0)
    if fmt == "rotated JPEG":
        assert (accepted.width, accepted.height) == (img.height, img.width)
