"""Video uploads: everything that can be refused is refused here, before a job exists.

A file is a video by its first bytes (ISO media that is not a HEIF photo, Matroska/WebM, AVI).
OpenCV's FFmpeg, the decoder the detector pool uses (roadsigns.detector.video), opens it from
a temporary file: one it cannot open, or whose first or last frames are missing (a cut-off
upload), is a 400; one longer than ROADSIGNS_VIDEO_MAX_DURATION_S, or with more frames to
analyse (duration x fps) than ROADSIGNS_VIDEO_MAX_FRAMES, a 422; one larger than
ROADSIGNS_VIDEO_MAX_UPLOAD_BYTES a 413.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass

import cv2

from roadsigns.gateway.uploads import UploadRejected
from roadsigns.shared.settings import Settings

_HEIF_IMAGE_BRANDS = {b"heic", b"heix", b"mif1", b"avif"}  # photos in an ISO media box
CONTENT_TYPES = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
}


def video_container(head: bytes) -> str | None:
    """The container the first bytes (16 or more) name, as a file extension; None: not a video."""
    if head[4:8] == b"ftyp" and head[8:12] not in _HEIF_IMAGE_BRANDS:
        return "mov" if head[8:10] == b"qt" else "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # QuickTime without an ftyp box
        return "mov"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm" if b"webm" in head[:64] else "mkv"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    return None


@dataclass(frozen=True)
class AcceptedVideo:
    data: bytes
    ext: str
    content_type: str
    width: int
    height: int
    duration_s: float
    frames_to_analyse: int


def validate_video(data: bytes, container: str, fps: float, settings: Settings) -> AcceptedVideo:
    """`container`: video_container's answer; `fps`: the frames a second the job will analyse."""
    if len(data) > settings.video_max_upload_bytes:
        raise UploadRejected(
            413, f"the video is {len(data)} bytes; the limit is {settings.video_max_upload_bytes} bytes"
        )
    with tempfile.NamedTemporaryFile(suffix=f".{container}") as f:
        f.write(data)
        f.flush()
        cap = cv2.VideoCapture(f.name)
        try:
            return _probe(cap, data, container, fps, settings)
        finally:
            cap.release()


def _probe(cap: cv2.VideoCapture, data: bytes, container: str, fps: float, settings: Settings) -> AcceptedVideo:
    if not cap.isOpened():
        raise UploadRejected(400, f"the {container} video could not be opened: it is truncated or not a video")
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    native = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
    if not (math.isfinite(native) and 0 < native <= 1000 and math.isfinite(count) and count > 0):
        raise UploadRejected(400, "the video does not say its frame rate and length: it cannot be sampled")
    if not cap.read()[0]:
        raise UploadRejected(400, "the video's first frame cannot be decoded: it is truncated or corrupt")
    frames = int(count)
    duration = frames / native
    if duration > settings.video_max_duration_s:
        raise UploadRejected(
            422, f"the video is {duration:.1f} s long; the limit is {settings.video_max_duration_s:g} s"
        )
    to_analyse = math.ceil(duration * min(fps, native))
    if to_analyse > settings.video_max_frames:
        raise UploadRejected(
            422,
            f"the video has {to_analyse} frames to analyse at {fps:g} fps; the limit is {settings.video_max_frames}"
            " (send a lower fps, or a shorter video)",
        )
    # A cut-off upload still opens (AVI, Matroska; MP4 only when its index comes first): its last
    # frames, within the detector's tolerance (roadsigns.detector.video.sample_frames), are missing.
    cap.set(cv2.CAP_PROP_POS_FRAMES, max(0, frames - 1 - max(2, frames // 20)))
    if not cap.read()[0]:
        raise UploadRejected(400, f"the video is truncated: its container says {frames} frames, the data ends early")
    return AcceptedVideo(data, container, CONTENT_TYPES[container], width, height, duration, to_analyse)
