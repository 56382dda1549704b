"""Where and when a photo was taken, from its EXIF GPS block.

Pillow reads the EXIF (`Image.getexif()`, the GPS IFD by `get_ifd(0x8825)`): the gateway has
the image open already to validate it, and the CLI opens it the same way, so one maintained
parser reads every photo and no second EXIF library is needed. This module takes what Pillow
gives (any mapping of tag number to value, so it needs no Pillow itself) and turns it into
a `Fix`, or None when the photo has no usable position. EXIF comes from the uploader: every
odd value (a zero denominator, a string where a number belongs, a latitude of 91°) means
"no position", never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

GPS_IFD = 0x8825  # the EXIF pointer to the GPS block

# GPS IFD tags (EXIF 2.32, table 15)
_LAT_REF, _LAT, _LON_REF, _LON = 1, 2, 3, 4
_ALT_REF, _ALT, _TIME, _STATUS = 5, 6, 7, 9
_TRACK_REF, _TRACK, _IMG_DIR_REF, _IMG_DIR = 14, 15, 16, 17
_DATE = 29


@dataclass(frozen=True)
class Fix:
    """A photo's position: degrees WGS84, metres above sea level, degrees clockwise from north
    (the camera's direction, else the direction of travel), and the GPS clock's time (UTC)."""

    lat: float
    lon: float
    altitude_m: float | None = None
    heading_deg: float | None = None
    taken_at: datetime | None = None

    def location(self) -> dict[str, float]:
        """The API's `location`: lat and lon, altitude and heading where known."""
        out = {"lat": self.lat, "lon": self.lon}
        if self.altitude_m is not None:
            out["altitude_m"] = self.altitude_m
        if self.heading_deg is not None:
            out["heading_deg"] = self.heading_deg
        return out


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return str(value).strip("\x00 ").upper() if value is not None else ""


def _degrees(value: Any, ref: Any, negative: str) -> float | None:
    """Degrees, minutes, seconds (three rationals; some writers give one decimal number)."""
    parts = value if isinstance(value, (tuple, list)) else (value,)
    numbers = [_number(p) for p in parts[:3]]
    known = [n for n in numbers if n is not None and n >= 0]
    if not numbers or len(known) < len(numbers):
        return None
    degrees = sum(n / 60.0**i for i, n in enumerate(known))
    return -degrees if _text(ref).startswith(negative) else degrees


def _taken_at(gps: Mapping[int, Any]) -> datetime | None:
    """GPSDateStamp ("YYYY:MM:DD") and GPSTimeStamp (h, m, s): UTC by definition, unlike
    DateTimeOriginal, which is the camera's local time without a zone."""
    try:
        date = datetime.strptime(_text(gps.get(_DATE)), "%Y:%m:%d")
        h, m, s = (_number(v) for v in gps[_TIME])
        if h is None or m is None or s is None:
            return None
        return date.replace(tzinfo=UTC) + timedelta(hours=h, minutes=m, seconds=s)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None


def from_gps_ifd(gps: Mapping[int, Any]) -> Fix | None:
    """The position in a GPS IFD, or None when it holds none (or only a receiver's "void" fix)."""
    if _text(gps.get(_STATUS)) == "V":  # the receiver said: no fix
        return None
    lat = _degrees(gps.get(_LAT), gps.get(_LAT_REF), "S")
    lon = _degrees(gps.get(_LON), gps.get(_LON_REF), "W")
    if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
        return None
    if lat == 0 and lon == 0:  # what cameras write before their first fix, not a place anyone photographs
        return None
    altitude = _number(gps.get(_ALT))
    if altitude is not None and _text(gps.get(_ALT_REF)) in ("1", "\x01"):  # below sea level
        altitude = -altitude
    heading = _number(gps.get(_IMG_DIR))
    if heading is None:
        heading = _number(gps.get(_TRACK))
    if heading is not None and not 0 <= heading <= 360:
        heading = None
    return Fix(round(lat, 7), round(lon, 7), altitude, heading % 360 if heading is not None else None, _taken_at(gps))


def from_exif(exif: Any) -> Fix | None:
    """The position in a Pillow `Image.Exif` (what `Image.getexif()` answers), or None."""
    try:
        gps = exif.get_ifd(GPS_IFD)
    except Exception:  # noqa: BLE001 - Pillow raises assorted errors on a corrupt IFD; the photo stays usable
        return None
    if not gps:
        return None
    try:
        return from_gps_ifd(gps)
    except Exception:  # noqa: BLE001 - a hostile value we did not foresee means "no position", not a 500
        return None
