"""Video: one track per physical sign, with the real detector and readers, on videos the test
encodes from real photos (a slow zoom towards the signs, as a car drives up to them)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from roadsigns.cli.pipeline import Pipeline
from roadsigns.detector.video import VideoUnreadable, is_video, sample_frames
from roadsigns.shared.settings import get_settings
from tests.conftest import PHOTOS, iou, read_gt, wait_for_job
from tests.stack import Stack

ROADSIGNS = str(Path(sys.executable).parent / "roadsigns")
SIZE = (800, 470)  # the video's frame (w, h): a dashcam-like 16:9-ish frame, smaller than the photo


def zoom_frames(photo: Path, seconds: float, fps: float, end_scale: float = 0.6) -> Iterator[tuple[np.ndarray, float]]:
    """Frames of a zoom from the whole photo to `end_scale` of it, centred on its signs; each with
    its scale (photo pixels per frame pixel divided by the first frame's)."""
    image = cv2.imread(str(photo))
    h, w = image.shape[:2]
    boxes = read_gt()[photo.name]
    cx = float(np.mean([(b[0] + b[2]) / 2 for b in boxes]))
    cy = float(np.mean([(b[1] + b[3]) / 2 for b in boxes]))
    n = round(seconds * fps)
    for i in range(n):
        s = 1 - (1 - end_scale) * i / max(1, n - 1)
        ww, hh = w * s, h * s
        x0 = min(max(0.0, cx - ww / 2), w - ww)
        y0 = min(max(0.0, cy - hh / 2), h - hh)
        m = np.array([[SIZE[0] / ww, 0, -x0 * SIZE[0] / ww], [0, SIZE[1] / hh, -y0 * SIZE[1] / hh]], np.float32)
        yield cv2.warpAffine(image, m, SIZE, flags=cv2.INTER_AREA), s


def write_video(path: Path, photo: Path, seconds: float = 2.0, fps: float = 10.0, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, SIZE)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} into {path.suffix}"
    for frame, _ in zoom_frames(photo, seconds, fps):
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(get_settings())


def test_a_zoom_over_a_photo_gives_one_track_per_sign_with_its_class(pipeline: Pipeline, tmp_path: Path) -> None:
    video = write_video(tmp_path / "drive.mp4", PHOTOS / "00224.jpg")
    result = pipeline.analyze_video(video, fps=5)
    assert result["kind"] == "video"
    assert result["frames_analysed"] == 10
    assert result["duration_s"] == pytest.approx(2.0, abs=0.01)
    expected = sorted(b[4] for b in read_gt()["00224.jpg"])  # three signs: 1 (speed limit 30), 9 and 28
    assert sorted(t["class_id"] for t in result["tracks"]) == expected, result["tracks"]
    keys = {"track_id", "class_id", "class_name", "category", "text", "confidence", "first_seen_s", "last_seen_s"}
    keys |= {"frames", "bbox", "best_frame_s", "crop_url", "location"}
    for t in result["tracks"]:
        assert set(t) == keys
        assert t["crop_url"] is None and t["location"] is None
        assert t["frames"] >= 8  # seen in (nearly) every sampled frame: one track, not one per frame
        assert 0 <= t["first_seen_s"] <= t["best_frame_s"] <= t["last_seen_s"] <= 2.0
    speed = next(t for t in result["tracks"] if t["class_id"] == 1)
    assert speed["text"] == "30"  # read on its sharpest crops and voted


def test_the_best_frame_box_is_where_the_sign_is_in_that_frame(pipeline: Pipeline, tmp_path: Path) -> None:
    video = write_video(tmp_path / "drive.avi", PHOTOS / "00330.jpg", seconds=1.0, fourcc="MJPG")
    result = pipeline.analyze_video(video, fps=10)
    (track,) = result["tracks"]
    assert track["class_id"] == 2 and track["text"] == "50"
    frames = list(zoom_frames(PHOTOS / "00330.jpg", 1.0, 10))
    index = round(track["best_frame_s"] * 10)
    _, s = frames[index]
    # Where the photo's box lands in that frame, from the zoom's own geometry (zoom_frames).
    x1, y1, x2, y2, _ = read_gt()["00330.jpg"][0]
    h, w = cv2.imread(str(PHOTOS / "00330.jpg")).shape[:2]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ww, hh = w * s, h * s
    x0, y0 = min(max(0.0, cx - ww / 2), w - ww), min(max(0.0, cy - hh / 2), h - hh)
    fx, fy = SIZE[0] / ww, SIZE[1] / hh
    assert iou(track["bbox"], [(x1 - x0) * fx, (y1 - y0) * fy, (x2 - x0) * fx, (y2 - y0) * fy]) > 0.6


def test_flicker_shorter_than_the_minimum_is_dropped(pipeline: Pipeline, tmp_path: Path) -> None:
    """The sign in one sampled frame only, blank frames around it: not a track at the default minimum of 2."""
    photo_frame = next(zoom_frames(PHOTOS / "00330.jpg", 1.0, 5))[0]
    path = tmp_path / "flash.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, SIZE)
    for i in range(5):
        writer.write(photo_frame if i == 2 else np.full_like(photo_frame, 90))
    writer.release()
    assert pipeline.analyze_video(path, fps=5)["tracks"] == []
    assert len(pipeline.analyze_video(path, fps=5, min_track_frames=1)["tracks"]) == 1


def test_frames_are_sampled_at_the_rate_asked(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mkv", PHOTOS / "00121.jpg", seconds=2.0, fps=25)
    times = [t for t, _ in sample_frames(video, 5)]
    assert times == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])
    assert len(list(sample_frames(video, 100))) == 50  # never more than the video has


def test_truncated_and_garbage_videos_fail_with_a_clear_error(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", PHOTOS / "00121.jpg", seconds=2.0, fourcc="MJPG")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    cut_mp4 = tmp_path / "cut.mp4"
    mp4 = write_video(tmp_path / "v.mp4", PHOTOS / "00121.jpg", seconds=1.0)
    cut_mp4.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    for bad in (cut, garbage, cut_mp4):
        with pytest.raises(VideoUnreadable):
            list(sample_frames(bad, 5))


def test_is_video_by_extension_or_content(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", PHOTOS / "00121.jpg", seconds=0.5)
    unnamed = tmp_path / "clip"
    unnamed.write_bytes(video.read_bytes())
    assert is_video(video) and is_video(unnamed)
    assert not is_video(PHOTOS / "00121.jpg")


def test_cli_writes_track_json_for_a_video_and_fails_cleanly_on_a_bad_one(tmp_path: Path) -> None:
    video = write_video(tmp_path / "drive.webm", PHOTOS / "00330.jpg", seconds=1.0, fps=5, fourcc="VP80")
    bad = tmp_path / "bad.mov"
    bad.write_bytes(b"not a video at all" * 100)
    out = subprocess.run(
        [ROADSIGNS, "analyze", str(video), str(PHOTOS / "00330.jpg"), "-o", str(tmp_path / "r.json"), "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    clip, photo = json.loads((tmp_path / "r.json").read_text())
    assert clip["file"] == str(video) and clip["kind"] == "video"
    assert [(t["class_id"], t["text"]) for t in clip["tracks"]] == [(2, "50")]
    assert "kind" not in photo and any(s["class_id"] == 2 for s in photo["signs"])  # the photo's JSON as before
    out = subprocess.run([ROADSIGNS, "analyze", str(bad), "--quiet"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    (failed,) = json.loads(out.stdout)
    assert failed["file"] == str(bad) and "video" in failed["error"]


# --- the API: POST /jobs takes a video; the detector and OCR pools run it; GET /jobs/<id> returns its tracks.


def test_the_gateway_refuses_bad_truncated_and_too_long_videos_with_a_reason(tmp_path: Path) -> None:
    """validate_video with the gateway's decoder, no server: each refusal a 4xx a person can act on."""
    from roadsigns.gateway.uploads import UploadRejected
    from roadsigns.gateway.videos import validate_video, video_container

    settings = get_settings()
    avi = write_video(tmp_path / "v.avi", PHOTOS / "00121.jpg", seconds=3.0, fourcc="MJPG").read_bytes()
    mp4 = write_video(tmp_path / "v.mp4", PHOTOS / "00121.jpg", seconds=3.0).read_bytes()
    assert video_container(avi) == "avi" and video_container(mp4) == "mp4"
    assert video_container((PHOTOS / "00121.jpg").read_bytes()) is None
    ok = validate_video(mp4, "mp4", 5, settings)
    assert (ok.width, ok.height, ok.duration_s, ok.frames_to_analyse) == (*SIZE, 3.0, 15)
    refusals = [
        (avi[: len(avi) // 2], "avi", settings, 400, "truncated"),
        (mp4[: len(mp4) // 2], "mp4", settings, 400, "could not be opened"),
        (b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40, "mp4", settings, 400, "could not be opened"),
        (mp4, "mp4", settings.model_copy(update={"video_max_duration_s": 2.0}), 422, "the limit is 2 s"),
        (mp4, "mp4", settings.model_copy(update={"video_max_frames": 10}), 422, "15 frames to analyse"),
        (mp4, "mp4", settings.model_copy(update={"video_max_upload_bytes": 1000}), 413, "the limit is 1000 bytes"),
    ]
    for data, container, limits, status, reason in refusals:
        with pytest.raises(UploadRejected) as refused:
            validate_video(data, container, 5, limits)
        assert refused.value.status == status and reason in refused.value.message, refused.value.message


def test_a_video_job_gives_its_tracks_and_progress(client: httpx.Client, tmp_path: Path) -> None:
    video = write_video(tmp_path / "drive.mp4", PHOTOS / "00224.jpg", seconds=2.0)
    with video.open("rb") as f:
        r = client.post("/jobs", files={"file": ("drive.mp4", f, "video/mp4")}, data={"fps": "5"})
    assert r.status_code == 202, r.text
    queued = r.json()
    assert queued["kind"] == "video" and queued["progress"] == {"frames_done": 0, "frames_total": 10}
    job = wait_for_job(client, queued["id"])
    assert job["status"] == "done", job
    assert job["frames_analysed"] == 10 and job["duration_s"] == pytest.approx(2.0, abs=0.01)
    assert job["progress"] is None and job["signs"] is None
    assert sorted(t["class_id"] for t in job["tracks"]) == [1, 9, 28]
    speed = next(t for t in job["tracks"] if t["class_id"] == 1)
    assert speed["text"] == "30"
    crop = client.get(speed["crop_url"])
    assert crop.status_code == 200 and crop.content.startswith(b"\x89PNG")


def test_bad_videos_get_a_4xx_and_no_job(client: httpx.Client, tmp_path: Path) -> None:
    avi = write_video(tmp_path / "v.avi", PHOTOS / "00121.jpg", seconds=2.0, fourcc="MJPG").read_bytes()
    for data in (avi[: len(avi) // 2], b"\x00\x00\x00\x18ftypisom" + b"\x00" * 4000):
        r = client.post("/jobs", files={"file": ("v.avi", data, "video/x-msvideo")})
        assert r.status_code == 400, r.text
        assert "video" in r.json()["detail"] or "truncated" in r.json()["detail"], r.text
    r = client.post("/jobs", files={"file": ("v.avi", avi, "video/x-msvideo")}, data={"fps": "0"})
    assert r.status_code == 422, r.text


def test_progress_marks_carry_frames_and_the_reconciler_resends_a_lost_video_as_a_video(engine) -> None:  # type: ignore[no-untyped-def]
    """No server: the tracker's functions on a fresh database (the `engine` fixture)."""
    import uuid
    from datetime import timedelta

    from sqlalchemy import func, update

    from roadsigns.shared.db.models import Job
    from roadsigns.shared.db.session import session_scope
    from roadsigns.shared.db.views import job_to_out
    from roadsigns.shared.pipeline import StageStarted
    from roadsigns.shared.schemas import JobMessage, JobStatus, VideoProgress, VideoRequest
    from roadsigns.tracker import service

    job_id = uuid.uuid4().hex
    with session_scope(engine) as s:
        s.add(Job(id=job_id, status="queued", blob_key=f"uploads/{job_id}.mp4", attempts=1, kind="video", video_fps=2))
    marks = [
        StageStarted(job_id=job_id, stage="detect_video", status=JobStatus.DETECTING, frames_done=n, frames_total=10)
        for n in (4, 2)  # a smaller count later in the batch (a stale mark) does not move it back
    ]
    service.mark_stages(engine, marks)
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job is not None and job.status == "detecting"
        assert job_to_out(job).progress == VideoProgress(frames_done=4, frames_total=10)
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=func.now() - timedelta(minutes=10)))
    sent: list[JobMessage] = []
    assert service.reconcile(engine, sent.append, stale_after_s=60, max_attempts=3)["requeued"] == 1
    (again,) = sent
    assert isinstance(again, VideoRequest) and (again.job_id, again.fps, again.attempt) == (job_id, 2.0, 2)


def test_a_video_may_be_larger_than_a_photo_but_only_a_video(client: httpx.Client, tmp_path: Path) -> None:
    """The stack's photo limit is 8 MiB (tests/stack.py), its video limit the default 200 MiB: a
    12 MB video goes past the body limit to the decoder (garbage after its header: a 400 there); a
    12 MB "photo" is cut at the photo limit while it streams."""
    avi = write_video(tmp_path / "v.avi", PHOTOS / "00121.jpg", seconds=1.0, fourcc="MJPG").read_bytes()
    padded = avi + b"\x00" * (12 * 1024 * 1024)
    r = client.post("/jobs", files={"file": ("big.avi", padded, "video/x-msvideo")})
    assert r.status_code != 413, r.text
    photo = (PHOTOS / "00121.jpg").read_bytes() + b"\x00" * (12 * 1024 * 1024)
    r = client.post("/jobs", files={"file": ("big.jpg", photo, "image/jpeg")})
    assert r.status_code == 413 and "limited" in r.json()["detail"], r.text


def test_a_video_split_across_two_detector_workers_gives_the_tracks_of_one_process(
    stack: Stack, client: httpx.Client, pipeline: Pipeline, tmp_path: Path
) -> None:
    """The stack's detectors split a video into 1-s segments (tests/conftest.py); with a second
    detector process, a 4-s video's four segments go to both processes, and the last to finish
    tracks them all. Its tracks are those found in this process over the whole video as one
    segment (`Pipeline.analyze_video`, what a job of a video shorter than a segment runs)."""
    logs = {name: stack.root / f"{name}.log" for name in ("detector", "detector-2")}
    stack.start_worker("detector", name="detector-2")
    try:
        stack.wait_workers_ready(["detector-2"])
        seen = {name: len(path.read_bytes()) for name, path in logs.items()}
        video = write_video(tmp_path / "drive.mp4", PHOTOS / "00224.jpg", seconds=4.0)
        with video.open("rb") as f:
            r = client.post("/jobs", files={"file": ("drive.mp4", f, "video/mp4")}, data={"fps": "5"})
        assert r.status_code == 202, r.text
        job = wait_for_job(client, r.json()["id"])
        received = re.compile(rb"Task roadsigns\.detect\.video_segment\[[-0-9a-f]+\] received")
        segments_by = {name: len(received.findall(path.read_bytes()[seen[name] :])) for name, path in logs.items()}
    finally:
        stack.stop("detector-2")
    assert job["status"] == "done", job
    assert sum(segments_by.values()) == 4 and all(segments_by.values()), segments_by  # each process some
    one = pipeline.analyze_video(video, fps=5)
    assert job["frames_analysed"] == one["frames_analysed"] == 20
    assert job["duration_s"] == one["duration_s"]
    assert len(job["tracks"]) == len(one["tracks"]) >= 3
    for split, whole in zip(job["tracks"], one["tracks"], strict=True):
        same = ("track_id", "class_id", "text", "first_seen_s", "last_seen_s", "best_frame_s", "frames")
        assert {k: split[k] for k in same} == {k: whole[k] for k in same}
        assert split["bbox"] == pytest.approx(whole["bbox"], abs=0.2)  # boxes are rounded to 0.1 px
        assert split["confidence"] == pytest.approx(whole["confidence"], abs=1e-3)


# --- Geolocation: a video's GPX track places each of its tracks (roadsigns.shared.gpxtrack).

GPX_T0 = "2026-05-02T09:00:00Z"
# (seconds after GPX_T0, lat, lon): a drive in Vienna, far from the photos of tests/test_inventory.py.
GPX_POINTS = [(0.0, 48.2, 16.37), (1.5, 48.2003, 16.3702), (3.0, 48.2004, 16.3708)]
GPX_OFFSET_S = 0.5  # the video starts half a second into the track


def gpx_track(points: list[tuple[float, float, float]] = GPX_POINTS) -> bytes:
    t0 = datetime.fromisoformat(GPX_T0)
    body = "".join(
        f'<trkpt lat="{lat}" lon="{lon}"><time>{(t0 + timedelta(seconds=t)).isoformat().replace("+00:00", "Z")}'
        "</time></trkpt>"
        for t, lat, lon in points
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><gpx version="1.1" creator="roadsigns tests" '
        f'xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>{body}</trkseg></trk></gpx>'
    ).encode()


def expected_position(video_s: float, offset_s: float = GPX_OFFSET_S) -> tuple[float, float]:
    """Where GPX_POINTS put the camera `video_s` seconds into the video: between the two points around it."""
    t = video_s + offset_s
    (t0, lat0, lon0), (t1, lat1, lon1) = next(
        (a, b) for a, b in zip(GPX_POINTS, GPX_POINTS[1:], strict=False) if a[0] <= t <= b[0]
    )
    f = (t - t0) / (t1 - t0)
    return lat0 + f * (lat1 - lat0), lon0 + f * (lon1 - lon0)


def test_a_video_with_a_gpx_track_gets_located_tracks_and_inventory_signs(client: httpx.Client, tmp_path: Path) -> None:
    video = write_video(tmp_path / "drive.mp4", PHOTOS / "00224.jpg", seconds=2.0)
    files = {"file": ("drive.mp4", video.read_bytes(), "video/mp4"), "gpx": ("drive.gpx", gpx_track())}
    r = client.post("/jobs", files=files, data={"fps": "5", "gpx_offset_s": str(GPX_OFFSET_S)})
    assert r.status_code == 202, r.text
    job = wait_for_job(client, r.json()["id"])
    assert job["status"] == "done", job
    assert sorted(t["class_id"] for t in job["tracks"]) == [1, 9, 28]
    for track in job["tracks"]:
        lat, lon = expected_position(track["best_frame_s"])
        where = track["location"]
        assert where is not None, track
        assert where["lat"] == pytest.approx(lat, abs=1e-6) and where["lon"] == pytest.approx(lon, abs=1e-6), track
        assert where["altitude_m"] is None and 0 <= where["heading_deg"] < 90  # north-east, as the track goes
    # The inventory: each track one sign (three classes) at its best frame's position, this job its source.
    box = "16.369,48.199,16.372,48.201"
    features = client.get("/inventory", params={"bbox": box}).json()["features"]
    want = sorted(
        (t["class_id"], round(t["location"]["lon"], 7), round(t["location"]["lat"], 7)) for t in job["tracks"]
    )
    assert sorted((f["properties"]["class_id"], *f["geometry"]["coordinates"]) for f in features) == want
    assert all(f["properties"]["job_ids"] == [job["id"]] for f in features)
    best = {t["class_id"]: t["best_frame_s"] for t in job["tracks"]}
    for f in features:  # seen at the GPS time of its best frame
        seen = datetime.fromisoformat(f["properties"]["first_seen"]) - datetime.fromisoformat(GPX_T0)
        assert seen.total_seconds() == pytest.approx(GPX_OFFSET_S + best[f["properties"]["class_id"]], abs=1e-3)
    rows = list(csv.DictReader(io.StringIO(client.get("/inventory.csv", params={"bbox": box}).text)))
    assert sorted(int(row["class_id"]) for row in rows) == [1, 9, 28]


def test_a_bad_gpx_track_gets_a_4xx_and_no_job(client: httpx.Client, tmp_path: Path) -> None:
    video = write_video(tmp_path / "drive.mp4", PHOTOS / "00224.jpg", seconds=1.0).read_bytes()
    before = client.get("/jobs", params={"limit": 1}).json()["total"]
    untimed = gpx_track().replace(b"<time>", b"<!--").replace(b"</time>", b"-->")
    refusals = [
        ({"file": ("d.mp4", video), "gpx": ("d.gpx", b"<gpx><trk>")}, {}, 422, "could not be parsed"),
        ({"file": ("d.mp4", video), "gpx": ("d.gpx", untimed)}, {}, 422, "no <time>"),
        ({"file": ("d.mp4", video), "gpx": ("d.gpx", gpx_track(GPX_POINTS[:1]))}, {}, 422, "fewer than 2"),
        ({"file": ("d.mp4", video), "gpx": ("d.gpx", gpx_track())}, {"gpx_offset_s": "60"}, 422, "does not cover"),
        ({"file": ("p.jpg", (PHOTOS / "00224.jpg").read_bytes()), "gpx": ("d.gpx", gpx_track())}, {}, 422, "video"),
    ]
    for files, form, status, reason in refusals:
        r = client.post("/jobs", files=files, data=form)
        assert r.status_code == status and reason in r.json()["detail"], r.text
    assert client.get("/jobs", params={"limit": 1}).json()["total"] == before


def test_cli_places_a_videos_tracks_with_its_gpx_track(tmp_path: Path) -> None:
    video = write_video(tmp_path / "drive.webm", PHOTOS / "00330.jpg", seconds=1.0, fps=5, fourcc="VP80")
    (tmp_path / "drive.gpx").write_bytes(gpx_track())
    args = [ROADSIGNS, "analyze", str(video), "--gpx", str(tmp_path / "drive.gpx"), "--quiet"]
    out = subprocess.run([*args, "--gpx-offset-s", str(GPX_OFFSET_S)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (clip,) = json.loads(out.stdout)
    (track,) = clip["tracks"]
    lat, lon = expected_position(track["best_frame_s"])
    assert track["location"]["lat"] == pytest.approx(lat, abs=1e-6)
    assert track["location"]["lon"] == pytest.approx(lon, abs=1e-6)
    refused = subprocess.run([*args, "--gpx-offset-s", "30"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "does not cover the video" in refused.stderr, refused.stderr
    # `roadsigns inventory` takes the video with the GPX beside it (drive.webm, drive.gpx): no offset there.
    (tmp_path / "other.webm").write_bytes(video.read_bytes())  # no GPX beside it: skipped
    out = subprocess.run(
        [ROADSIGNS, "inventory", str(tmp_path), "--quiet"], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    (sign,) = json.loads(out.stdout)["features"]
    lat, lon = expected_position(track["best_frame_s"], offset_s=0.0)
    assert sign["geometry"]["coordinates"] == [pytest.approx(lon, abs=1e-6), pytest.approx(lat, abs=1e-6)]
    assert sign["properties"]["class_id"] == track["class_id"] and sign["properties"]["files"] == [str(video)]
    assert sign["properties"]["first_seen"] == (
        datetime.fromisoformat(GPX_T0) + timedelta(seconds=track["best_frame_s"])
    ).isoformat().replace("+00:00", "Z")
    assert "1 videos without a GPX track skipped" in out.stderr, out.stderr
