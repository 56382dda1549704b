"""Celery app of the detector pool (queue `detect`). Run one process per GPU.

celery -A roadsigns.detector.worker worker -Q detect --concurrency 1
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery.signals import worker_init

from roadsigns.detector.service import ImageUnreadable, detect_job
from roadsigns.detector.serving import serving
from roadsigns.detector.video import VideoUnreadable, detect_video
from roadsigns.shared import pipeline
from roadsigns.shared.blobstore import BlobNotFound, BlobStore
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import serve_worker_metrics
from roadsigns.shared.perchild import PerChild
from roadsigns.shared.schemas import DetectRequest, DetectResult, VideoDetectResult, VideoRequest
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


def detect_video_stored(request: VideoRequest) -> VideoDetectResult:
    """The uploaded video, from the blob store, tracked by this child's detector; how many of its
    frames are analysed goes to the tracker as started marks, for the job's progress."""
    data = BlobStore(settings.blob_dir).get(request.blob_key)
    last = 0.0

    def progress(done: int, total: int) -> None:
        nonlocal last
        if time.monotonic() - last < PROGRESS_EVERY_S:
            return
        last = time.monotonic()
        try:
            pipeline.push_frames(broker(), pipeline.DETECT_VIDEO, request, done, total)
        except redis.RedisError as exc:  # progress is a courtesy: the result does not wait for it
            log.warning("job %s: progress not sent: %s", request.job_id, exc)

    return detect_video(request, data, detector(), settings, progress)


detect_video_task = pipeline.stage_task(
    app, pipeline.DETECT_VIDEO, detect_video_stored, settings, log, expected=(BlobNotFound, VideoUnreadable)
)
