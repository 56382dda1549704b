"""The sign inventory: sightings of signs (a sign found in a located photo, or a video's track
placed by the video's GPX track) merged into physical signs, as GeoJSON or CSV. Pure: no
database, no I/O; the gateway's `GET /inventory` and the CLI's `roadsigns inventory` both call `merge`.

A sighting's position is the camera's (the photo's EXIF GPS; for a video track, the GPX
position at its best frame, roadsigns.shared.gpxtrack), not the sign's: a sign is seen
from a few metres to a few tens of metres away, and consumer GPS wanders by about 5 m. So
sightings of the same sign (same class, same class name, same text) within `within_m` metres
(`ROADSIGNS_INVENTORY_MERGE_M`, 15 m) are one physical sign, placed at their mean.

How: greedy leader clustering. Sightings are taken oldest first; each joins the nearest
physical sign of its kind whose *first* sighting lies within `within_m` (haversine distance),
or starts a new one. Why this and not another clustering:

- Distance to the first sighting, not to the running mean or to any member: every sighting of
  a sign lies within `within_m` of one point, so a sign never spans more than twice the
  distance. Single linkage (DBSCAN with min_samples=1) would chain sightings 14 m apart along
  a road into one "sign" a kilometre long, where a row of identical signs stands.
- One pass, oldest first, with a grid of cells at least `within_m` wide, so a sighting is
  compared only with signs in the 3 x k cells around it: O(n) for a city's worth of photos,
  and the same input always gives the same signs. The price of greediness: a result that can
  depend on the order where sightings of two signs of one kind overlap, which happens only when
  two identical signs stand within about `within_m` of each other.
- A photo counts once per sign: a sign takes at most one sighting of each source (job or
  file). Two identical signs in one photo (one each side of the road) stay two signs, and the
  next photo's two sightings go one to each. A video is one source too: its tracks are already
  one per physical sign (roadsigns.detector.video), so two of one kind stay two signs.

A sign's `sightings` is how many detections were merged into it; `first_seen`/`last_seen` the
oldest and newest of their times; `sources` the jobs (or files) that saw it, oldest first.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
METRES_PER_DEGREE = EARTH_RADIUS_M * math.pi / 180  # along a meridian, about 111.2 km


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two points given in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Sighting:
    """One sign in one located photo, or one located track of a video."""

    lat: float
    lon: float
    class_id: int | None
    class_name: str
    text: str
    seen_at: datetime
    source: str  # the job id (API) or the file (CLI) it was seen in


@dataclass
class PhysicalSign:
    sightings: list[Sighting] = field(default_factory=list)
    seen_in: set[str] = field(default_factory=set, repr=False)  # the sightings' sources, to look up

    def add(self, sighting: Sighting) -> None:
        self.sightings.append(sighting)
        self.seen_in.add(sighting.source)

    @property
    def first(self) -> Sighting:
        return self.sightings[0]

    @property
    def lat(self) -> float:
        return sum(s.lat for s in self.sightings) / len(self.sightings)

    @property
    def lon(self) -> float:
        """The mean longitude, taken across the antimeridian the short way (179.9999 and
        -179.9999 average to 180, not to 0)."""
        ref = self.first.lon
        mean = ref + sum(_lon_delta(ref, s.lon) for s in self.sightings) / len(self.sightings)
        return (mean + 180) % 360 - 180 if not -180 <= mean <= 180 else mean

    @property
    def first_seen(self) -> datetime:
        return min(s.seen_at for s in self.sightings)

    @property
    def last_seen(self) -> datetime:
        return max(s.seen_at for s in self.sightings)

    @property
    def sources(self) -> list[str]:
        return list(dict.fromkeys(s.source for s in self.sightings))


def _lon_delta(ref: float, lon: float) -> float:
    return (lon - ref + 180) % 360 - 180


def _kind(s: Sighting) -> tuple[int | None, str, str]:
    """What must agree for two sightings to be one sign: the class (its name too, which tells
    open-set signs apart: "speed limit 40", "other sign") and the text read, ignoring case."""
    return s.class_id, s.class_name, s.text.strip().casefold()


class _Grid:
    """Physical signs of one kind, by the cell of their first sighting."""

    def __init__(self, within_m: float) -> None:
        self.within_m = within_m
        self.cell_deg = max(within_m, 1.0) / METRES_PER_DEGREE  # >= within_m: neighbours hold every candidate
        self.columns = max(1, int(360 / self.cell_deg))
        self.cells: dict[tuple[int, int], list[PhysicalSign]] = defaultdict(list)
        self.all: list[PhysicalSign] = []

    def _cell(self, lat: float, lon: float) -> tuple[int, int]:
        return math.floor(lat / self.cell_deg), math.floor((lon + 180) / self.cell_deg) % self.columns

    def candidates(self, lat: float, lon: float) -> Iterable[PhysicalSign]:
        row, col = self._cell(lat, lon)
        # A longitude degree shrinks with cos(latitude): widen the search towards the poles.
        edge = min(90.0, abs(lat) + 2 * self.cell_deg)
        span = math.ceil(1 / max(math.cos(math.radians(edge)), 1e-9)) + 1
        if 2 * span + 1 >= self.columns or span > 64:  # near a pole: look at all of this kind
            return self.all
        return (
            sign
            for r in (row - 1, row, row + 1)
            for c in range(col - span, col + span + 1)
            for sign in self.cells.get((r, c % self.columns), ())
        )

    def add(self, sign: PhysicalSign) -> None:
        self.cells[self._cell(sign.first.lat, sign.first.lon)].append(sign)
        self.all.append(sign)


def merge(sightings: Iterable[Sighting], within_m: float) -> list[PhysicalSign]:
    """Physical signs, in the order of their first sighting (see the module's docstring)."""
    grids: dict[tuple[int | None, str, str], _Grid] = {}
    signs: list[PhysicalSign] = []
    for s in sorted(sightings, key=lambda s: (s.seen_at, s.source)):
        grid = grids.setdefault(_kind(s), _Grid(within_m))
        best, best_m = None, math.inf
        for sign in grid.candidates(s.lat, s.lon):
            metres = haversine_m(sign.first.lat, sign.first.lon, s.lat, s.lon)
            if metres <= within_m and metres < best_m and s.source not in sign.seen_in:
                best, best_m = sign, metres
        if best is None:
            best = PhysicalSign()
            best.add(s)
            grid.add(best)
            signs.append(best)
        else:
            best.add(s)
    return signs


@dataclass(frozen=True)
class BBox:
    """`minlon,minlat,maxlon,maxlat` (GeoJSON's order); minlon > maxlon crosses the antimeridian."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    @classmethod
    def parse(cls, text: str) -> BBox:
        """The box, or a ValueError that says what is wrong in words for the caller."""
        parts = text.split(",")
        if len(parts) != 4:
            raise ValueError(f"bbox must be four numbers minlon,minlat,maxlon,maxlat (got {len(parts)} values)")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError("bbox must be four numbers minlon,minlat,maxlon,maxlat") from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError("bbox values must be finite numbers")
        box = cls(*values)
        if not (-180 <= box.min_lon <= 180 and -180 <= box.max_lon <= 180):
            raise ValueError("bbox longitudes must lie between -180 and 180")
        if not (-90 <= box.min_lat <= box.max_lat <= 90):
            raise ValueError("bbox latitudes must lie between -90 and 90, minlat not above maxlat")
        return box

    def widened(self, metres: float) -> BBox:
        """The box grown by `metres` on every side, wrapping across the antimeridian (all
        longitudes near a pole): what to read so that every sighting of a sign inside is read."""
        dlat = metres / METRES_PER_DEGREE
        min_lat, max_lat = max(-90.0, self.min_lat - dlat), min(90.0, self.max_lat + dlat)
        cos = math.cos(math.radians(max(abs(min_lat), abs(max_lat))))
        dlon = dlat / cos if cos > 1e-9 else 360.0
        width = self.max_lon - self.min_lon + (360 if self.min_lon > self.max_lon else 0)
        if width + 2 * dlon >= 360:
            return BBox(-180.0, min_lat, 180.0, max_lat)
        min_lon, max_lon = self.min_lon - dlon, self.max_lon + dlon
        return BBox(
            min_lon + 360 if min_lon < -180 else min_lon, min_lat, max_lon - 360 if max_lon > 180 else max_lon, max_lat
        )

    def contains(self, lat: float, lon: float) -> bool:
        if not self.min_lat <= lat <= self.max_lat:
            return False
        if self.min_lon <= self.max_lon:
            return self.min_lon <= lon <= self.max_lon
        return lon >= self.min_lon or lon <= self.max_lon


def _utc(when: datetime) -> str:
    """ISO 8601 in UTC, as the API writes every time: 2026-05-01T12:00:00Z."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def feature(sign: PhysicalSign, sources_as: str = "job_ids") -> dict[str, Any]:
    """One GeoJSON Point feature ([lon, lat], to 7 decimals: about a centimetre)."""
    first = sign.first
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [round(sign.lon, 7), round(sign.lat, 7)]},
        "properties": {
            "class_id": first.class_id,
            "class_name": first.class_name,
            "text": first.text,
            "sightings": len(sign.sightings),
            "first_seen": _utc(sign.first_seen),
            "last_seen": _utc(sign.last_seen),
            sources_as: sign.sources,
        },
    }


def feature_collection(signs: Iterable[PhysicalSign], sources_as: str = "job_ids") -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": [feature(s, sources_as) for s in signs]}


def _cell_text(value: str) -> str:
    """Text read off a sign goes into a spreadsheet: one that starts like a formula is quoted."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(signs: Iterable[PhysicalSign], sources_as: str = "job_ids") -> str:
    """The same as the GeoJSON, a row per sign; the sources space-separated in one column. A
    text or class name that starts like a spreadsheet formula (=, +, -, @) gets a leading '."""
    out = io.StringIO()
    columns = ["lat", "lon", "class_id", "class_name", "text", "sightings", "first_seen", "last_seen", sources_as]
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for sign in signs:
        row = feature(sign, sources_as)
        lon, lat = row["geometry"]["coordinates"]
        props = row["properties"]
        text = {"class_name": _cell_text(props["class_name"]), "text": _cell_text(props["text"])}
        writer.writerow({**props, **text, "lat": lat, "lon": lon, sources_as: " ".join(props[sources_as])})
    return out.getvalue()
