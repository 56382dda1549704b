"""The whole pipeline in one process: the workers' stage list (roadsigns.shared.pipeline) and their
functions, without a broker, a database or a blob store."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from roadsigns.detector.model import SignDetector
from roadsigns.detector.service import build_detector, detect_job
from roadsigns.detector.video import VIDEO_SUFFIXES, track_video
from roadsigns.ocr.reader import SignReader
from roadsigns.ocr.service import name_unread, read_job
from roadsigns.ocr.video import read_video
from roadsigns.shared import exifgps, pipeline
from roadsigns.shared.exifgps import Fix
from roadsigns.shared.schemas import DetectRequest, DetectResult, JobResult, SignResult
from roadsigns.shared.settings import Settings

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp", ".tif", ".tiff"}


def collect_images(paths: list[Path], videos: bool = False) -> list[Path]:
    """Files as given, folders searched recursively for images (and videos, if asked), in a stable order."""
    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES if videos else IMAGE_SUFFIXES
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in suffixes))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return found


@dataclass
class Analysis:
    signs: list[SignResult]
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    image_size: list[int]

    def as_json(self, fix: Fix | None = None) -> dict[str, Any]:
        """As the API's job: `location` (the photo's EXIF GPS, else null) on the photo and each sign."""
        location = fix.location() if fix else None
        return {
            "location": location,
            "signs": [{**s.model_dump(mode="json"), "location": location} for s in self.signs],
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "model_versions": self.model_versions,
            "image_size": self.image_size,
        }


def photo_fix(data: bytes) -> Fix | None:
    """Where the photo was taken, from its EXIF GPS, read as the gateway reads it; None without."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return exifgps.from_exif(img.getexif())
    except Exception:  # noqa: BLE001 - not an image Pillow opens: the pipeline reports it
        return None


class Pipeline:
    def __init__(self, settings: Settings, ocr: bool = True, detector: SignDetector | None = None) -> None:
        """`detector`: one already built (`roadsigns promote` pins registry versions), else from the settings."""
        self.settings = settings
        self.detector = detector or build_detector(settings)
        self.min_class_probability = settings.open_set_min_probability
        self.reader: SignReader | None = None
        if ocr:
            self.reader = SignReader(
                settings.ocr_languages,
                settings.ocr_min_confidence,
                settings.ocr_learned_readers,
                settings.open_set_min_probability,
            )

    def analyze(self, data: bytes, job_id: str = "local", min_confidence: float | None = None) -> Analysis:
        """`min_confidence` None: the settings' reporting threshold; 0: every proposal."""
        t0 = time.perf_counter()

        def detect(request: DetectRequest) -> DetectResult:  # the photo is `data`, not a stored blob
            return detect_job(request, data, self.detector, min_confidence, self.min_class_probability)

        def ocr(request: DetectResult) -> JobResult:  # without readers: named by the classifier, else by shape
            return read_job(request, self.reader) if self.reader else name_unread(request, self.min_class_probability)

        entry = DetectRequest(job_id=job_id, blob_key="-", submitted_at=time.time())  # no blob: `detect` has the photo
        result = pipeline.run_in_process(entry, {pipeline.DETECT.name: detect, pipeline.OCR.name: ocr})
        assert isinstance(result, JobResult), result  # the tracker's finish is the next stage: not run here
        timings = dict(result.timings_ms)
        timings.pop("queue_wait_ms", None)
        timings["total_ms"] = (time.perf_counter() - t0) * 1000
        return Analysis(result.signs, timings, result.model_versions, result.image_size)

    def analyze_video(
        self,
        path: Path,
        fps: float | None = None,
        min_track_frames: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """The video's signs, one track each, as the API's video job (`crop_url` and `location` null:
        `roadsigns analyze --gpx` places the tracks).
        `fps`, `min_track_frames`: default from the settings; `progress(frames done, total)`.
        Raises roadsigns.detector.video.VideoUnreadable for a video the decoder cannot read through."""
        t0 = time.perf_counter()
        s = self.settings
        tracked = track_video(
            path,
            self.detector,
            s.video_fps if fps is None else fps,
            s.video_min_track_frames if min_track_frames is None else min_track_frames,
            s.video_ocr_crops,
            min_class_probability=self.min_class_probability,
            progress=progress,
        )
        result = read_video(tracked, self.reader, self.min_class_probability)
        timings = {**result.timings_ms, "total_ms": (time.perf_counter() - t0) * 1000}
        return {
            **result.model_dump(mode="json", exclude={"crops_png_b64", "timings_ms"}),
            "timings_ms": {k: round(v, 1) for k, v in timings.items()},
        }


def annotate(data: bytes, signs: list[SignResult]) -> np.ndarray:
    """The photo with every sign's box and a label: class, text read, confidence."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not an image OpenCV can read")
    for s in signs:
        x1, y1, x2, y2 = (int(round(v)) for v in s.bbox)
        cv2.rectangle(image, (x1, y1), (x2, y2), (0, 200, 255), 2)
        label = f"{s.class_name}{' ' + repr(s.text) if s.text else ''} {s.confidence:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = y1 - 4 if y1 - th - 6 > 0 else y2 + th + 4
        cv2.rectangle(image, (x1, ty - th - 3), (x1 + tw + 2, ty + 3), (0, 0, 0), -1)
        cv2.putText(image, label, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return image
