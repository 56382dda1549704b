"""Where a video was at each moment, from a GPX track recorded beside it.

gpxpy (a maintained GPX 1.0/1.1 parser) reads the file; this module keeps the track's timed
points and answers "where was the camera `t` seconds into the video".

Alignment: the video's t=0 is the GPX track's first point, unless `offset_s` says at how many
seconds into the GPX the video starts (negative: the video started before the recording).
Position at video time t: linear interpolation between the two points of a segment that
surround it (latitude, longitude, elevation where both points have one); the heading is the
GPX's own course where both points give one (GPX 1.0 `<course>`), else the segment's bearing.
A time before the first point, after the last, or in the gap between two segments (the receiver
lost its fix there) has no position: never an extrapolation.

`aligned` keeps only the points that cover the video (and one either side), relative to the
video's start, as a small JSON document: the gateway stores it on the job, the tracker places
each track with it when it writes the result (`VideoGpx.position`), and a re-sent job finds it
there again.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from roadsigns.shared.exifgps import Fix

# One point: seconds (since the track's first point, or since the video's start once aligned),
# latitude, longitude, elevation (m) or None, course (degrees from north) or None.
Point = tuple[float, float, float, float | None, float | None]


class GpxRefused(ValueError):
    """A GPX that cannot position a video; the message says why, in words for the uploader."""


@dataclass(frozen=True)
class GpxTrack:
    """A GPX file's timed track points: `start` is the first point's time (UTC), each segment's
    points in time order with times in seconds since `start`."""

    start: datetime
    segments: list[list[Point]]

    @property
    def end_s(self) -> float:
        return max(seg[-1][0] for seg in self.segments)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse(data: bytes) -> GpxTrack:
    """The GPX's track points (every `<trkpt>` of every `<trk>`), or GpxRefused: unparsable, a
    point without a `<time>` or outside WGS84's range, or fewer than two timed points."""
    import gpxpy
    import gpxpy.gpx

    head = data[:4096].lower()
    if b"<!doctype" in head or b"<!entity" in head:  # GPX needs neither; entities are a parser's attack surface
        raise GpxRefused("the GPX may not declare a DOCTYPE or entities")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise GpxRefused(f"the GPX is not UTF-8 text: {exc}") from None
    try:
        gpx = gpxpy.parse(text)
    except gpxpy.gpx.GPXException as exc:
        raise GpxRefused(f"the GPX could not be parsed: {exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a bad number or date gpxpy did not wrap
        raise GpxRefused(f"the GPX could not be parsed: {exc}") from None
    timed: list[list[tuple[datetime, float, float, float | None, float | None]]] = []
    count = 0
    for track in gpx.tracks:
        for segment in track.segments:
            points = []
            for p in segment.points:
                count += 1
                if p.time is None:
                    raise GpxRefused(f"the GPX's track point {count} has no <time>: a video needs a timed track")
                lat, lon = _finite(p.latitude), _finite(p.longitude)
                if lat is None or lon is None or abs(lat) > 90 or abs(lon) > 180:
                    raise GpxRefused(f"the GPX's track point {count} is not a WGS84 position")
                when = p.time if p.time.tzinfo else p.time.replace(tzinfo=UTC)  # GPX times are UTC
                course = _finite(getattr(p, "course", None))
                points.append((when.astimezone(UTC), lat, lon, _finite(p.elevation), course))
            points.sort(key=lambda q: q[0])
            kept = [q for i, q in enumerate(points) if i == 0 or q[0] > points[i - 1][0]]  # one point per time
            if kept:
                timed.append(kept)
    if count == 0:
        raise GpxRefused("the GPX has no track points (<trk><trkseg><trkpt>)")
    if sum(len(seg) for seg in timed) < 2:
        raise GpxRefused("the GPX has fewer than 2 timed track points: a track needs at least 2")
    timed.sort(key=lambda seg: seg[0][0])
    start = timed[0][0][0]
    segments = [
        [((when - start).total_seconds(), lat, lon, ele, course) for when, lat, lon, ele, course in seg]
        for seg in timed
    ]
    return GpxTrack(start, segments)


@dataclass(frozen=True)
class VideoGpx:
    """A GPX track aligned to a video: `t0` is the GPS time of the video's first frame; each
    segment's points with times in seconds since it (`Point`)."""

    t0: datetime
    segments: list[list[Point]]

    def to_json(self) -> dict[str, Any]:
        return {"t0": self.t0.isoformat(), "segments": [[list(p) for p in seg] for seg in self.segments]}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> VideoGpx:
        t0 = datetime.fromisoformat(doc["t0"])
        return cls(t0, [[(p[0], p[1], p[2], p[3], p[4]) for p in seg] for seg in doc["segments"]])

    def position(self, t_s: float) -> Fix | None:
        """Where the camera was `t_s` seconds into the video, or None outside the track."""
        for seg in self.segments:
            if len(seg) < 2 or not seg[0][0] <= t_s <= seg[-1][0]:
                continue
            i = min(max(bisect.bisect_right([p[0] for p in seg], t_s), 1), len(seg) - 1)
            return _between(seg[i - 1], seg[i], t_s, self.t0)
        return None


def _between(a: Point, b: Point, t_s: float, t0: datetime) -> Fix:
    f = (t_s - a[0]) / (b[0] - a[0])
    lat = a[1] + f * (b[1] - a[1])
    dlon = (b[2] - a[2] + 180) % 360 - 180  # the short way across the antimeridian
    lon = a[2] + f * dlon
    lon = (lon + 180) % 360 - 180 if not -180 <= lon <= 180 else lon
    altitude = a[3] + f * (b[3] - a[3]) if a[3] is not None and b[3] is not None else (a[3] if f == 0 else None)
    if a[4] is not None and b[4] is not None:
        heading: float | None = (a[4] + f * ((b[4] - a[4] + 180) % 360 - 180)) % 360
    else:
        heading = bearing_deg(a[1], a[2], b[1], b[2])
    return Fix(round(lat, 7), round(lon, 7), altitude, heading, t0 + timedelta(seconds=t_s))


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float | None:
    """The initial great-circle bearing from the first point to the second, degrees clockwise from
    north; None for two equal points (a camera standing still has no direction of travel)."""
    if lat1 == lat2 and lon1 == lon2:
        return None
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return round(math.degrees(math.atan2(y, x)) % 360, 2)


def aligned(track: GpxTrack, duration_s: float, offset_s: float | None = None) -> VideoGpx:
    """The track relative to a video of `duration_s` seconds that starts `offset_s` seconds into
    the GPX (default 0: at its first point): only the points from the last one at or before the
    video's start to the first one at or after its end. GpxRefused when no segment overlaps the video."""
    offset = offset_s or 0.0
    segments = []
    for seg in track.segments:
        times = [p[0] - offset for p in seg]
        lo = max(bisect.bisect_right(times, 0.0) - 1, 0)
        hi = min(bisect.bisect_left(times, duration_s) + 1, len(seg))
        kept = [(t, *p[1:]) for t, p in zip(times[lo:hi], seg[lo:hi], strict=True)]
        if len(kept) >= 2 and kept[0][0] <= duration_s and kept[-1][0] >= 0:
            segments.append(kept)
    if not segments:
        raise GpxRefused(
            f"the GPX track ({track.end_s:.1f} s long, from {track.start.isoformat()}) does not cover the video"
            f" ({duration_s:.1f} s, starting {offset:g} s into the track): check gpx_offset_s"
        )
    return VideoGpx(track.start + timedelta(seconds=offset), segments)
