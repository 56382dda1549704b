"""Geotagged copies of photos: EXIF GPS written with Pillow, the pixels left as they are."""

from __future__ import annotations

import math
from datetime import datetime

from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from roadsigns.shared.exifgps import GPS_IFD
from roadsigns.shared.inventory import METRES_PER_DEGREE


def _dms(value: float) -> tuple[IFDRational, IFDRational, IFDRational]:
    value = abs(value)
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = (value - degrees - minutes / 60) * 3600
    return IFDRational(degrees, 1), IFDRational(minutes, 1), IFDRational(round(seconds * 1_000_000), 1_000_000)


def gps_ifd(
    lat: float,
    lon: float,
    altitude_m: float | None = None,
    heading_deg: float | None = None,
    taken_at: datetime | None = None,
) -> dict[int, object]:
    gps: dict[int, object] = {0: b"\x02\x03\x00\x00", 1: "N" if lat >= 0 else "S", 2: _dms(lat)}
    gps |= {3: "E" if lon >= 0 else "W", 4: _dms(lon)}
    if altitude_m is not None:
        gps |= {5: b"\x01" if altitude_m < 0 else b"\x00", 6: IFDRational(round(abs(altitude_m) * 100), 100)}
    if heading_deg is not None:
        gps |= {16: "T", 17: IFDRational(round(heading_deg * 100), 100)}
    if taken_at is not None:
        gps |= {29: taken_at.strftime("%Y:%m:%d")}
        gps |= {7: (IFDRational(taken_at.hour, 1), IFDRational(taken_at.minute, 1), IFDRational(taken_at.second, 1))}
    return gps


def geotag(jpeg: bytes, lat: float, lon: float, **more: object) -> bytes:
    """The JPEG with an EXIF APP1 segment holding a GPS IFD, after its JFIF header: the same pixels."""
    exif = Image.Exif()
    exif[GPS_IFD] = gps_ifd(lat, lon, **more)  # type: ignore[arg-type]
    payload = exif.tobytes()
    segment = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    at = 4 + int.from_bytes(jpeg[4:6], "big") if jpeg[2:4] == b"\xff\xe0" else 2
    return jpeg[:at] + segment + jpeg[at:]


def moved(lat: float, lon: float, north_m: float = 0.0, east_m: float = 0.0) -> tuple[float, float]:
    """The point `north_m` metres north and `east_m` metres east of (lat, lon)."""
    return lat + north_m / METRES_PER_DEGREE, lon + east_m / (METRES_PER_DEGREE * math.cos(math.radians(lat)))
