"""Signs in a video: one entry per physical sign, not one per frame.

Frames are sampled at `fps` a second of video (OpenCV's FFmpeg decodes mp4, mov, mkv, webm,
avi: H.264, HEVC, MPEG-4, VP8/9, MJPEG), the detector runs on each (`SignDetector.detect`, as
for a photo), and ByteTrack (roboflow's `trackers`, the maintained successor of supervision's
ByteTrack) links the detections into tracks. A track's class is voted over its frames,
weighted by confidence; its box and crop are those of its most confident frame; only its few
sharpest crops (variance of the Laplacian) travel on to the reader (roadsigns.ocr.video),
which reads those and votes the text. A track seen in fewer than `min_track_frames` sampled
frames is flicker and dropped.

Detection (the costly part) and tracking are two functions: `detect_frames` over a time range
of the sampled frames, `track_frames` over the detected frames of consecutive ranges. The CLI
runs both over the whole video in one process (`track_video`); the detector pool splits a long
video into segments (`plan_segments`, `ROADSIGNS_VIDEO_SEGMENT_S`) that several detector tasks
detect at once, and the last to finish tracks them all (roadsigns.detector.worker). Sampling
is one grid for the whole video whichever range a task reads, and tracking only starts once
every frame is detected, so a split video gives the same tracks as one task would.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel

from roadsigns.detector.model import SignDetector
from roadsigns.detector.service import encode_png_b64
from roadsigns.shared import classes, openset
from roadsigns.shared.schemas import Detection, TrackedSign, VideoDetectResult, VideoRequest
from roadsigns.shared.settings import get_settings

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp"}
HEIF_IMAGE_BRANDS = {b"heic", b"heix", b"mif1", b"avif"}  # photos in an ISO media box, not videos
SHARPNESS_SIDE = 96  # crops are compared for sharpness at one size, so a larger crop is not sharper for its size
# ByteTrack's thresholds are on the localiser's score (how sure it is of a sign, whatever the class).
TRACK_HIGH_SCORE = 0.5  # first-round matches; lower-scored boxes only extend tracks (ByteTrack's second round)
TRACK_START_SCORE = 0.4  # a box that matches no track starts one at this score or more
TRACK_LOST_S = 1.0  # a track missing this long is over; a sign seen again after that is a new track


class VideoUnreadable(ValueError):
    """Not a video the decoder reads, or one cut short."""


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # the container's frame rate
    frame_count: int  # as the container says (0 when it does not)
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frame_count / self.fps if self.fps > 0 else 0.0


def is_video(path: Path) -> bool:
    """By extension, then by the first bytes (ISO media `ftyp`, Matroska/WebM, RIFF AVI)."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return True
    try:
        with path.open("rb") as f:
            head = f.read(16)
    except OSError:
        return False
    iso_media = head[4:8] == b"ftyp" and head[8:12] not in HEIF_IMAGE_BRANDS
    return iso_media or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def probe(path: Path) -> VideoInfo:
    """The video's frame rate, frame count and size; VideoUnreadable if the decoder cannot open it."""
    cap = cv2.VideoCapture(str(path))
    try:
        return _info(cap)
    finally:
        cap.release()


def _info(cap: cv2.VideoCapture) -> VideoInfo:
    if not cap.isOpened():
        raise VideoUnreadable("not a video the decoder reads (or a truncated one)")
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width <= 0 or height <= 0:
        raise VideoUnreadable("the video has no picture")
    fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else 0.0
    return VideoInfo(fps, int(count) if math.isfinite(count) and count > 0 else 0, width, height)


def sample_frames(
    path: Path, fps: float, start_s: float = 0.0, end_s: float | None = None
) -> Iterator[tuple[float, np.ndarray]]:
    """(seconds, BGR frame) about `fps` times a second of video, every frame if it has fewer.

    Every frame is grabbed (decoded), only the sampled ones converted. The sampling grid is the
    whole video's, whatever the range: `start_s`/`end_s` (none: to the end) only say which of its
    frames to yield (start_s <= t < end_s), so the frames of consecutive ranges are exactly the
    frames of the whole video. A range decodes the video from its start (a seek lands on
    keyframes, not on the grid), so a later range pays for decoding what it skips, never for
    converting or detecting it. Raises VideoUnreadable for a file the decoder cannot open, one
    without a frame, or one that ends well before the frame count its container gives
    (truncated; checked by the range that reads to the end)."""
    cap = cv2.VideoCapture(str(path))
    try:
        info = _info(cap)
        step, next_t, read = 1.0 / fps, 0.0, 0
        while cap.grab():
            t = read / info.fps if info.fps else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
            read += 1
            if t + 1e-6 < next_t:
                continue
            next_t += step * max(1, math.floor((t - next_t) / step) + 1)
            if end_s is not None and t >= end_s:
                return
            if t < start_s:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            yield t, frame
        if read == 0:
            raise VideoUnreadable("the video holds no frame the decoder reads (truncated or not a video)")
        if info.frame_count and read < info.frame_count - max(2, info.frame_count // 20):
            raise VideoUnreadable(f"the video ends after {read} of its {info.frame_count} frames (truncated?)")
    finally:
        cap.release()


def plan_segments(duration_s: float, segment_s: float) -> list[tuple[float, float | None]]:
    """Split a video of `duration_s` into time ranges (start, end; the last's end None: to the end)
    of about `segment_s` each, for detector tasks to share: as many as `segment_s` fits, rounded up,
    all of one length, so no task gets a stub. A video no longer than one segment, one whose
    duration is unknown (0), or `segment_s` 0 is one range."""
    if segment_s <= 0 or duration_s <= segment_s:
        return [(0.0, None)]
    n = math.ceil(duration_s / segment_s)
    bounds = [duration_s * i / n for i in range(n)]
    return [(a, b) for a, b in zip(bounds, [*bounds[1:], None], strict=True)]


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop at SHARPNESS_SIDE px: higher is sharper (and nearer)."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    gray = cv2.resize(gray, (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


class Sighting(BaseModel):
    """A sign in one sampled frame, as tracking needs it: the detector's box and scores, and its
    crop (a PNG in base64, as messages carry crops) with its sharpness, so that tracking needs
    neither the frame nor the detector, and can run in another task than the detection."""

    bbox: tuple[float, float, float, float]
    class_id: int
    detector_confidence: float
    class_probability: float
    sharpness: float
    crop_png_b64: str

    @property
    def confidence(self) -> float:
        return self.detector_confidence * self.class_probability


class FrameSightings(BaseModel):
    t: float  # seconds into the video
    signs: list[Sighting]


class SegmentDetections(BaseModel):
    """The signs in a range of a video's sampled frames (`detect_frames`): what a detector task
    leaves in the blob store for the task that tracks the whole video (roadsigns.detector.worker).
    Floats survive its JSON exactly, so tracking these is tracking what the detector returned."""

    start_s: float
    frames: list[FrameSightings]
    duration_s: float  # the whole video's, as its container gives it (0: unknown)
    video_fps: float  # the container's frame rate (0: unknown)
    image_size: list[int]
    detect_ms: float
    model_versions: dict[str, str]
    min_confidence: float  # the floor a sign's confidence had to reach


def expected_frames(info: VideoInfo, fps: float) -> int:
    """How many frames sampling at `fps` gives, from the container's figures (0 when unknown)."""
    return math.ceil(info.duration_s * min(fps, info.fps)) if info.fps else 0


def detect_frames(
    path: Path,
    detector: SignDetector,
    fps: float = 5.0,
    start_s: float = 0.0,
    end_s: float | None = None,
    min_confidence: float | None = None,
    min_class_probability: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    small_signs: bool | None = None,
    max_side: int | None = None,
) -> SegmentDetections:
    """The detector on the sampled frames of the video at `path` from `start_s` to `end_s` (none:
    to the end; `sample_frames`' grid, the whole video's). A detection is kept as for a photo
    (`detect_job`): when the confidence the reader could give it reaches `min_confidence` (default
    the detector's); `min_class_probability` defaults to the settings'. `progress(done, total)`
    after each frame: the range's frames done, and the whole video's estimated from its container
    (never less than `done`). `small_signs` (default `ROADSIGNS_VIDEO_SMALL_SIGNS`, off) runs the
    small-sign pass on frames small enough for it: it halves the rate on 800x470 frames, and a
    sign too small in one frame is usually seen larger a few frames later. For the same reason a
    frame larger than `max_side` (default `ROADSIGNS_VIDEO_IMGSZ`, 1376) is shrunk to it, where a
    photo runs at up to `ROADSIGNS_DETECTOR_IMGSZ` (2048): a 1920x1080 frame at its own size would
    cost twice as much."""
    floor = detector.min_confidence if min_confidence is None else min_confidence
    if min_class_probability is None:
        min_class_probability = get_settings().open_set_min_probability
    if small_signs is None:
        small_signs = get_settings().video_small_signs
    if max_side is None:
        max_side = get_settings().video_imgsz
    info = probe(path)
    expected = expected_frames(info, fps)
    frames: list[FrameSightings] = []
    image_size, spent = [info.width, info.height], 0.0
    for t, frame in sample_frames(path, fps, start_s, end_s):
        t0 = time.perf_counter()
        signs = [
            Sighting(
                bbox=f.bbox,
                class_id=f.class_id,
                detector_confidence=f.detector_confidence,
                class_probability=f.class_probability,
                sharpness=sharpness(f.crop),
                crop_png_b64=encode_png_b64(f.crop),
            )
            for f in detector.detect(frame, 0.0, min_score=floor, small=small_signs, max_side=max_side).signs
            if openset.best_confidence(f.class_id, f.detector_confidence, f.class_probability, min_class_probability)
            >= floor
        ]
        spent += (time.perf_counter() - t0) * 1000
        frames.append(FrameSightings(t=t, signs=signs))
        image_size = [int(frame.shape[1]), int(frame.shape[0])]
        if progress:
            progress(len(frames), max(expected, len(frames)))
    return SegmentDetections(
        start_s=start_s,
        frames=frames,
        duration_s=info.duration_s,
        video_fps=info.fps,
        image_size=image_size,
        detect_ms=spent,
        model_versions=detector.versions,
        min_confidence=floor,
    )


@dataclass
class _Track:
    """What a track keeps while the video plays: one line per frame, and only its best crops."""

    first_s: float
    last_s: float = 0.0
    times: list[float] = field(default_factory=list)
    scores: list[tuple[int, float, float]] = field(default_factory=list)  # class, localiser score, class prob.
    best: tuple[float, float, Sighting] | None = None  # confidence, time, the most confident sighting
    sharpest: list[tuple[float, str]] = field(default_factory=list)  # (sharpness, crop PNG), sharpest first

    def add(self, t: float, s: Sighting, keep_crops: int) -> None:
        self.last_s = t
        self.times.append(t)
        self.scores.append((s.class_id, s.detector_confidence, s.class_probability))
        if self.best is None or s.confidence > self.best[0]:
            self.best = (s.confidence, t, s)
        self.sharpest.append((s.sharpness, s.crop_png_b64))
        self.sharpest.sort(key=lambda c: -c[0])
        del self.sharpest[keep_crops:]

    def voted(self) -> tuple[int, float, float]:
        """The class with the most confidence over the track's frames; its mean probability over
        every frame (0 where another class won a frame) and the mean localiser score."""
        votes: dict[int, float] = {}
        for cls, det, prob in self.scores:
            votes[cls] = votes.get(cls, 0.0) + det * prob
        class_id = max(votes, key=lambda c: votes[c])
        n = len(self.scores)
        prob = sum(p for c, _, p in self.scores if c == class_id) / n
        return class_id, prob, sum(d for _, d, _ in self.scores) / n

    def as_message(self, track_id: int) -> TrackedSign:
        assert self.best is not None
        _, best_t, s = self.best
        class_id, prob, det = self.voted()
        cls = classes.get(class_id)
        detection = Detection(
            bbox=[round(v, 1) for v in s.bbox],
            class_id=class_id,
            class_name=cls.name,
            category=cls.category,
            confidence=round(det * prob, 4),
            detector_confidence=round(det, 4),
            class_probability=round(prob, 4),
            crop_png_b64=s.crop_png_b64,
        )
        return TrackedSign(
            track_id=track_id,
            detection=detection,
            first_seen_s=round(self.first_s, 3),
            last_seen_s=round(self.last_s, 3),
            best_frame_s=round(best_t, 3),
            frames=len(self.times),
            sharpest_crops_png_b64=[c for _, c in self.sharpest],
        )


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def track_frames(
    segments: list[SegmentDetections],
    fps: float,
    min_track_frames: int = 2,
    crops_per_track: int = 3,
    request: VideoRequest | None = None,
) -> VideoDetectResult:
    """The physical signs over a video's detected frames, each a track: ByteTrack over the
    segments' frames in time order, as if one task had detected them all. `fps`: the rate they
    were sampled at; `request`: the job's message, whose job the result names (none in the CLI)."""
    import supervision as sv
    from trackers import ByteTrackTracker

    segments = sorted(segments, key=lambda s: s.start_s)
    tracker = ByteTrackTracker(
        lost_track_buffer=round(TRACK_LOST_S * 30),  # in frames at 30 fps, whatever the rate
        frame_rate=fps,
        track_activation_threshold=TRACK_START_SCORE,
        minimum_consecutive_frames=1,  # flicker is judged over the whole track below, not at its start
        high_conf_det_threshold=TRACK_HIGH_SCORE,
    )
    tracks: dict[int, _Track] = {}
    unclaimed: list[tuple[float, Sighting]] = []  # the last frame's boxes without a track
    singles: list[_Track] = []  # boxes no track ever claimed
    frames, last_t, t0 = 0, 0.0, time.perf_counter()
    for t, found in ((f.t, f.signs) for segment in segments for f in segment.frames):
        frames, last_t = frames + 1, t
        boxes = np.array([f.bbox for f in found], np.float32).reshape(-1, 4)
        scores = np.array([f.detector_confidence for f in found], np.float32)
        out = tracker.update(
            sv.Detections(xyxy=boxes, confidence=scores, data={"i": np.arange(len(found))}), timestamp=t
        )
        assert out.tracker_id is not None
        claimed: list[tuple[float, Sighting]] = []
        indices = out.data.get("i", np.zeros(0, np.int64))  # an empty result carries no data
        for i, track_id in zip(indices, out.tracker_id, strict=True):
            f = found[int(i)]
            if track_id < 0:
                claimed.append((t, f))
                continue
            if track_id not in tracks:
                # ByteTrack names a track from its second frame on: its first is a box the last frame left unclaimed.
                tracks[track_id] = track = _Track(first_s=t)
                first = max(unclaimed, key=lambda u: _iou(u[1].bbox, f.bbox), default=None)
                if first is not None and _iou(first[1].bbox, f.bbox) > 0:
                    unclaimed.remove(first)
                    track.first_s = first[0]
                    track.add(first[0], first[1], crops_per_track)
            tracks[track_id].add(t, f, crops_per_track)
        for u_t, u in unclaimed:
            singles.append(_Track(first_s=u_t))
            singles[-1].add(u_t, u, crops_per_track)
        unclaimed = claimed
    for u_t, u in unclaimed:
        singles.append(_Track(first_s=u_t))
        singles[-1].add(u_t, u, crops_per_track)
    kept = [tr for tr in [*tracks.values(), *singles] if len(tr.times) >= min_track_frames]
    kept.sort(key=lambda tr: (tr.first_s, tr.best[2].bbox[0] if tr.best else 0.0))
    track_ms = (time.perf_counter() - t0) * 1000
    video = segments[0]
    duration = video.duration_s or (last_t + (1 / video.video_fps if video.video_fps else 0.0))
    return VideoDetectResult(
        job_id=request.job_id if request else "local",
        attempt=request.attempt if request else 1,
        submitted_at=request.submitted_at if request else time.time(),
        frames_analysed=frames,
        duration_s=round(duration, 3),
        fps=fps,
        tracks=[tr.as_message(n) for n, tr in enumerate(kept, 1)],
        timings_ms={"detect_ms": sum(s.detect_ms for s in segments), "track_ms": track_ms},
        model_versions=video.model_versions,
        image_size=segments[-1].image_size,
        min_confidence=video.min_confidence,
    )


def track_video(
    path: Path,
    detector: SignDetector,
    fps: float = 5.0,
    min_track_frames: int = 2,
    crops_per_track: int = 3,
    min_confidence: float | None = None,
    min_class_probability: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VideoDetectResult:
    """The physical signs in the video at `path`, each a track over its sampled frames: the whole
    video as one segment, detected (`detect_frames`, which says what the arguments do) then
    tracked (`track_frames`), in this process. A video job split across detector tasks runs the
    same two functions, so it finds the same tracks."""
    whole = detect_frames(path, detector, fps, 0.0, None, min_confidence, min_class_probability, progress)
    return track_frames([whole], fps, min_track_frames, crops_per_track)
