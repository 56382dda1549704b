"""A video's positions from a GPX track (roadsigns.shared.gpxtrack): parsing, alignment and
interpolation; the gateway refusing what cannot position a video; the tracker placing each
track at its best frame; the inventory reading those tracks as sightings."""

from __future__ import annotations

import base64
import math
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from roadsigns.gateway import repository
from roadsigns.gateway.app import create_app
from roadsigns.shared import inventory
from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.db.models import Job, Sign
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.db.views import job_to_out
from roadsigns.shared.gpxtrack import GpxRefused, VideoGpx, aligned, bearing_deg, parse
from roadsigns.shared.inventory import BBox, haversine_m
from roadsigns.shared.schemas import VideoResult, VideoTrack
from roadsigns.tracker import service
from tests.conftest import PHOTOS
from tests.fast.conftest import settings_for
from tests.fast.test_pipeline import sent

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


def gpx(points: list[tuple[float, float, float | None]], segments: list[int] | None = None, **extra: str) -> bytes:
    """A GPX 1.1 document: (seconds after T0 or None for no <time>, lat, lon) per point; `segments`
    the index of each segment's first point (default: one segment)."""
    starts = set(segments or [0])
    body = []
    for i, (t, lat, lon) in enumerate(points):
        if i in starts:
            body.append(("</trkseg>" if i else "") + "<trkseg>")
        when = f"<time>{(T0 + timedelta(seconds=t)).isoformat().replace('+00:00', 'Z')}</time>" if t is not None else ""
        body.append(f'<trkpt lat="{lat}" lon="{lon}"><ele>{extra.get("ele", 100 + i)}</ele>{when}</trkpt>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="roadsigns tests" '
        'xmlns="http://www.topografix.com/GPX/1/1"><trk><name>drive</name>' + "".join(body) + "</trkseg></trk></gpx>"
    ).encode()


# A drive north, then east: 10 s a leg.
DRIVE = gpx([(0, 52.5, 13.4), (10, 52.501, 13.4), (20, 52.501, 13.402)])


def test_positions_are_interpolated_between_the_surrounding_points() -> None:
    track = aligned(parse(DRIVE), duration_s=20.0)
    assert track.t0 == T0
    at_4 = track.position(4.0)
    assert at_4 is not None
    assert (at_4.lat, at_4.lon, at_4.altitude_m, at_4.heading_deg) == (52.5004, 13.4, pytest.approx(100.4), 0.0)
    assert at_4.taken_at == T0 + timedelta(seconds=4)
    at_15 = track.position(15.0)
    assert at_15 is not None
    assert (at_15.lat, at_15.lon) == (52.501, 13.401) and at_15.heading_deg == pytest.approx(90.0, abs=0.01)
    assert track.position(0.0) is not None and track.position(20.0) is not None
    # Outside the track: no position, never an extrapolation.
    assert track.position(-0.5) is None and track.position(20.5) is None


def test_the_offset_says_where_in_the_track_the_video_starts() -> None:
    track = aligned(parse(DRIVE), duration_s=5.0, offset_s=12.5)
    assert track.t0 == T0 + timedelta(seconds=12.5)
    start = track.position(0.0)
    assert start is not None and (start.lat, start.lon) == (52.501, 13.4005)
    # Only the points around the video are kept: the one before its start and the one after its end.
    assert [p[0] for seg in track.segments for p in seg] == [-2.5, 7.5]
    again = VideoGpx.from_json(track.to_json())
    assert again == track and again.position(5.0) == track.position(5.0)
    # A video that starts before the recording: no position for its first seconds.
    early = aligned(parse(DRIVE), duration_s=10.0, offset_s=-3.0)
    assert early.position(2.0) is None and early.position(3.0) is not None


def test_a_gap_between_segments_has_no_position_and_courses_are_used_where_given() -> None:
    track = aligned(parse(gpx([(0, 52.5, 13.4), (10, 52.501, 13.4), (60, 52.6, 13.4), (70, 52.601, 13.4)], [0, 2])), 70)
    assert track.position(5) is not None and track.position(65) is not None
    assert track.position(30) is None  # the receiver lost its fix: where the car was is unknown
    gpx10 = (
        b'<?xml version="1.0"?><gpx version="1.0" creator="t"><trk><trkseg>'
        b'<trkpt lat="0" lon="179.999"><time>2026-05-01T12:00:00Z</time><course>350</course></trkpt>'
        b'<trkpt lat="0" lon="-179.999"><time>2026-05-01T12:00:10Z</time><course>10</course></trkpt>'
        b"</trkseg></trk></gpx>"
    )
    across = aligned(parse(gpx10), 10).position(5.0)
    assert across is not None
    assert abs(across.lon) == pytest.approx(180.0) and across.heading_deg == pytest.approx(0.0, abs=1e-9)
    assert bearing_deg(52.5, 13.4, 52.5, 13.4) is None
    assert bearing_deg(0, 0, 0, 1) == 90.0 and bearing_deg(0, 0, -1, 0) == 180.0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<gpx><trk><trkseg><trkpt lat=", "could not be parsed"),
        (b"\xff\xfe not text", "not UTF-8"),
        (gpx([(None, 52.5, 13.4), (None, 52.6, 13.4)]), "has no <time>"),
        (gpx([(0, 52.5, 13.4)]), "fewer than 2 timed track points"),
        (gpx([(0, 52.5, 13.4), (0, 52.6, 13.4)]), "fewer than 2 timed track points"),  # two points, one time
        (b'<?xml version="1.0"?><gpx version="1.1" creator="t"><wpt lat="1" lon="2"/></gpx>', "no track points"),
        (gpx([(0, 95.0, 13.4), (1, 52.6, 13.4)]), "not a WGS84 position"),
        (b'<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY a "aaaa">]><gpx/>', "DOCTYPE"),
    ],
)
def test_refusals_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(GpxRefused, match=reason):
        parse(data)


def test_a_track_that_does_not_cover_the_video_is_refused() -> None:
    with pytest.raises(GpxRefused, match="does not cover the video"):
        aligned(parse(DRIVE), duration_s=10.0, offset_s=25.0)
    with pytest.raises(GpxRefused, match="does not cover the video"):
        aligned(parse(DRIVE), duration_s=10.0, offset_s=-11.0)


# --- the gateway: a GPX goes with a video, is checked at upload, and is kept with the job.


def _video(path: Path, seconds: float = 2.0, fps: float = 10.0) -> bytes:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (160, 96))
    for i in range(round(seconds * fps)):
        writer.write(np.full((96, 160, 3), i * 10 % 255, np.uint8))
    writer.release()
    return path.read_bytes()


def test_the_gateway_keeps_a_videos_aligned_track_and_refuses_bad_ones(
    engine: Engine, broker: str, tmp_path: Path
) -> None:
    video = _video(tmp_path / "drive.mp4")
    photo = (PHOTOS / "00224.jpg").read_bytes()
    settings = settings_for(engine, broker, tmp_path / "blobs", gpx_max_upload_bytes=2000)
    with TestClient(create_app(settings)) as client:

        def post(upload: bytes, track: bytes | None, **form: str) -> tuple[int, str]:
            files = {"file": ("drive.mp4", upload, "application/octet-stream")}
            if track is not None:
                files["gpx"] = ("drive.gpx", track, "application/gpx+xml")
            r = client.post("/jobs", files=files, data=form)
            return r.status_code, r.text

        refused = [
            (post(photo, DRIVE), 422, "a GPX track goes with a video"),
            (post(video, b"<gpx>"), 422, "could not be parsed"),
            (post(video, gpx([(None, 52.5, 13.4), (None, 52.6, 13.4)])), 422, "no <time>"),
            (post(video, gpx([(0, 52.5, 13.4)])), 422, "fewer than 2"),
            (post(video, DRIVE + b" " * 2000), 413, "the GPX track is larger than the limit of 2000 bytes"),
            (post(video, DRIVE, gpx_offset_s="30"), 422, "does not cover the video"),
            (post(video, None, gpx_offset_s="3"), 422, "gpx_offset_s needs a GPX track"),
            (post(video, DRIVE, gpx_offset_s="nan"), 422, "gpx_offset_s"),
        ]
        for (status, text), want_status, want in refused:
            assert (status, want in text) == (want_status, True), text
        with session_scope(engine) as s:
            assert s.execute(select(Job)).first() is None
        assert sent(broker, "detect") == []
        status, text = post(video, DRIVE, gpx_offset_s="12.5")
        assert status == 202, text
        plain, _ = post(video, None)
        assert plain == 202
    with session_scope(engine) as s:
        located, other = sorted(s.execute(select(Job)).scalars(), key=lambda j: j.gpx_track is None)
        assert located.taken_at == T0 + timedelta(seconds=12.5)
        assert located.gpx_track == aligned(parse(DRIVE), 2.0, 12.5).to_json()
        assert (other.gpx_track, other.taken_at) == (None, None)


# --- the tracker places each track; the inventory reads them with the photos' sightings.


def _track(track_id: int, class_id: int, best_frame_s: float) -> VideoTrack:
    return VideoTrack(
        track_id=track_id,
        class_id=class_id,
        class_name="speed limit 50" if class_id == 2 else "stop",
        category="prohibitory" if class_id == 2 else "other",
        text="50" if class_id == 2 else "",
        confidence=0.9,
        first_seen_s=0.0,
        last_seen_s=best_frame_s + 1,
        frames=5,
        bbox=[1, 2, 30, 40],
        best_frame_s=best_frame_s,
    )


def test_tracks_get_their_best_frames_position_and_join_the_inventory(engine: Engine, tmp_path: Path) -> None:
    track = aligned(parse(DRIVE), duration_s=20.0, offset_s=0.0)
    video_id, photo_id = uuid.uuid4().hex, uuid.uuid4().hex
    with session_scope(engine) as s:
        s.add(
            Job(
                id=video_id,
                status="reading",
                blob_key="uploads/v.mp4",
                attempts=1,
                kind="video",
                video_fps=5,
                gpx_track=track.to_json(),
                taken_at=track.t0,
            )
        )
        # A photo of the same speed limit taken 3 m from where the video saw it, later that day.
        near = 52.5004 + 3 / inventory.METRES_PER_DEGREE
        s.add(
            Job(
                id=photo_id,
                status="done",
                blob_key="p.jpg",
                attempts=1,
                lat=near,
                lon=13.4,
                taken_at=T0 + timedelta(hours=2),
            )
        )
        s.add(
            Sign(
                job_id=photo_id,
                index=0,
                x1=0,
                y1=0,
                x2=9,
                y2=9,
                class_id=2,
                class_name="speed limit 50",
                category="prohibitory",
                confidence=0.9,
                text="50",
                text_confidence=90,
            )
        )
    _, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    crop = base64.b64encode(png.tobytes()).decode()
    result = VideoResult(
        job_id=video_id,
        frames_analysed=100,
        duration_s=20.0,
        tracks=[_track(1, 2, 4.0), _track(2, 14, 15.0), _track(3, 14, 21.0)],  # the last: past the GPX's end
        crops_png_b64=[crop] * 3,
        timings_ms={},
        model_versions={},
        image_size=[160, 96],
    )
    assert service.finish_video(engine, BlobStore(tmp_path), result) is not None
    with session_scope(engine) as s:
        out = job_to_out(s.get(Job, video_id))
    assert out.location is None and out.tracks is not None
    speed, stop, late = out.tracks
    assert speed.location is not None and stop.location is not None and late.location is None
    assert (speed.location.lat, speed.location.lon, speed.location.heading_deg) == (52.5004, 13.4, 0.0)
    assert speed.location.altitude_m == pytest.approx(100.4)
    assert (stop.location.lat, stop.location.lon) == (52.501, 13.401)
    assert stop.location.heading_deg == pytest.approx(90.0, abs=0.01)

    with session_scope(engine) as s:
        sightings = repository.sightings(s, "default", None, None)
        in_box = repository.sightings(s, "default", None, BBox(13.4005, 52.5005, 13.5, 52.6))
        speed_only = repository.sightings(s, "default", 2, None)
    assert sorted((x.source, x.class_id, x.seen_at) for x in sightings) == sorted(
        [
            (video_id, 2, T0 + timedelta(seconds=4)),
            (video_id, 14, T0 + timedelta(seconds=15)),
            (photo_id, 2, T0 + timedelta(hours=2)),
        ]
    )
    assert [(x.source, x.class_id) for x in in_box] == [(video_id, 14)]
    assert sorted(x.source for x in speed_only) == sorted([video_id, photo_id])
    signs = inventory.merge(sightings, 15.0)
    assert sorted((s.first.class_id, s.sources) for s in signs) == [(2, [video_id, photo_id]), (14, [video_id])]
    merged = next(s for s in signs if s.first.class_id == 2)
    assert haversine_m(merged.lat, merged.lon, 52.5004, 13.4) == pytest.approx(1.5, abs=0.01)
    assert math.isclose(merged.lon, 13.4)
