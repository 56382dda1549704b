"""Celery app of the detector pool (queue `detect`). Run one process per GPU.

celery -A roadsigns.detector.worker worker -Q detect --concurrency 1
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery.signals import worker_init

from roadsigns.detector import segments
from roadsigns.detector.service import ImageUnreadable, detect_job
from roadsigns.detector.serving import serving
from roadsigns.detector.video import SegmentDetections, VideoUnreadable, detect_frames, probe, track_frames
from roadsigns.shared import pipeline
from roadsigns.shared.blobstore import BlobNotFound, BlobStore
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import serve_worker_metrics
from roadsigns.shared.perchild import PerChild
from roadsigns.shared.schemas import DetectRequest, DetectResult, VideoDetectResult, VideoRequest, VideoSegmentRequest
from roadsigns.shared.settings import get_settings
from roadsigns.shared.tasks import make_celery

settings = get_settings()
log = setup_logging("detector")
app = make_celery("roadsigns-detector", settings)


# Built in each child, never in this parent; with a registry alias, each child follows the alias
# (ROADSIGNS_MODEL_POLL_S) and swaps in new versions between tasks.
detector = serving(settings, log).warm()


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    serve_worker_metrics(settings.metrics_port)


def detect_stored(request: DetectRequest) -> DetectResult:
    """The uploaded photo, from the blob store, through the detector this child serves now (taken
    once: a swap during the task does not change the model that answers it, or its versions)."""
    return detect_job(request, BlobStore(settings.blob_dir).get(request.blob_key), detector())


detect = pipeline.stage_task(
    app, pipeline.DETECT, detect_stored, settings, log, expected=(BlobNotFound, ImageUnreadable)
)


broker = PerChild(lambda: redis.Redis.from_url(settings.broker_url, socket_timeout=5))
PROGRESS_EVERY_S = 1.0  # a video's frames analysed go to the tracker at most this often


def plan_stored(request: VideoRequest) -> list[VideoSegmentRequest]:
    """The uploaded video's segments (`ROADSIGNS_VIDEO_SEGMENT_S`; one for a shorter video), each a
    message for a detector task of this pool: a long video is detected by several workers at once."""
    info = probe(BlobStore(settings.blob_dir).path(request.blob_key))
    return segments.plan(request, info, settings.video_segment_s)


def detect_segment_stored(request: VideoSegmentRequest) -> VideoDetectResult | None:
    """This child's detector on the request's segment of the stored video; its detections go to the
    blob store. The task that detects the job's last segment (whichever it is) tracks all of them
    and returns the tracks; the others return None (roadsigns.detector.segments). Frames detected
    over all the job's segments go to the tracker as started marks, for the job's progress."""
    store = BlobStore(settings.blob_dir)
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        try:
            done = segments.record_frames(broker(), request, done)
            if time.monotonic() - last >= PROGRESS_EVERY_S:
                last = time.monotonic()
                pipeline.push_frames(broker(), pipeline.DETECT_VIDEO_SEGMENT, request, done, max(total, done))
        except redis.RedisError as exc:  # progress is a courtesy: the result does not wait for it
            log.warning("job %s: progress not sent: %s", request.job_id, exc)

    found = detect_frames(
        store.path(request.blob_key),
        detector(),
        request.fps,
        request.start_s,
        request.end_s,
        min_class_probability=settings.open_set_min_probability,
        progress=progress,
    )
    store.put(segments.blob_key(request.job_id, request.attempt, request.index), found.model_dump_json().encode())
    if segments.mark_detected(broker(), request) < request.count:
        return None
    detected = [
        SegmentDetections.model_validate_json(store.get(segments.blob_key(request.job_id, request.attempt, i)))
        for i in range(request.count)
    ]
    return track_frames(detected, request.fps, settings.video_min_track_frames, settings.video_ocr_crops, request)


detect_video_task = pipeline.stage_task(
    app, pipeline.DETECT_VIDEO, plan_stored, settings, log, expected=(BlobNotFound, VideoUnreadable)
)
detect_segment_task = pipeline.stage_task(
    app,
    pipeline.DETECT_VIDEO_SEGMENT,
    detect_segment_stored,
    settings,
    log,
    expected=(BlobNotFound, VideoUnreadable),
)
