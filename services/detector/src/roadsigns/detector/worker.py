"""Celery app of the detector pool (queue `detect`). Run one process per GPU.

celery -A roadsigns.detector.worker worker -Q detect --concurrency 1

With `ROADSIGNS_DETECTOR_BATCH` above 1 the same command runs that many detect tasks in threads
of one process and detects their photos together (roadsigns.detector.collector); the worker sets
its pool and concurrency itself, whatever the command says.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any, cast

import redis
from celery.signals import worker_init

from roadsigns.detector import batching, segments
from roadsigns.detector.collector import Collector, TimedOut
from roadsigns.detector.model import DetectorOutput, SignDetector
from roadsigns.detector.service import ImageUnreadable, decode_image, detect_job, job_result
from roadsigns.detector.serving import serving
from roadsigns.detector.video import SegmentDetections, VideoUnreadable, detect_frames, probe, track_frames
from roadsigns.shared import deliveries, pipeline
from roadsigns.shared.blobstore import BlobNotFound, BlobStore
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import DETECT_BATCH_PHOTOS, serve_worker_metrics
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


broker = PerChild(lambda: redis.Redis.from_url(settings.broker_url, socket_timeout=5))

# Batches across queued jobs (ROADSIGNS_DETECTOR_BATCH above 1; roadsigns.detector.collector).
BATCH = settings.detector_batch
model_lock = threading.Lock()  # the batch thread and a video task's thread share the model


def _detect_many(images: Sequence[Any]) -> list[tuple[DetectorOutput, SignDetector]]:
    """One batch through the detector serving now (taken once: the batch's answers and versions
    come from one pair), as `detect_job` calls it on each photo."""
    current = detector()
    with model_lock:
        outputs = batching.detect_batch(current, images, 0.0, min_score=current.min_confidence)
    return [(out, current) for out in outputs]


def _batch_done(photos: int, seconds: float) -> None:
    DETECT_BATCH_PHOTOS.observe(photos)
    log.info("detected a batch of %d photos in %.0f ms", photos, seconds * 1000)


collector = Collector(_detect_many, BATCH, settings.detector_batch_wait_ms / 1000, log, _batch_done)


@worker_init.connect
def _batch_pool(sender: Any = None, **_: Any) -> None:
    """Batches need the detect tasks running side by side in one process: Celery's thread pool, one
    thread per photo of a batch, so the worker holds a batch's worth of messages (prefetch is
    concurrency x 1). The model loads in the collector's thread before the first task arrives."""
    if BATCH > 1 and sender is not None:
        sender.pool_cls, sender.concurrency = "threads", BATCH
        wait_ms = settings.detector_batch_wait_ms
        log.info("detecting batches of up to %d photos (waiting %g ms for more)", BATCH, wait_ms)
        collector.start(before=detector)


def _delivered_before(request: DetectRequest) -> bool:
    """Whether this job's detect message came before (stage_task has counted this delivery)."""
    try:
        count = broker().get(deliveries.key(pipeline.DETECT.name, request.delivery_id))
    except redis.RedisError as exc:
        log.warning("job %s: delivery count not read (%s): batched as a first delivery", request.job_id, exc)
        return False
    return int(cast(bytes, count) or 0) > 1


def detect_stored_batched(request: DetectRequest) -> DetectResult:
    """`detect_stored` with the model call shared with the other photos queued in this worker: the
    photo is read and decoded here (an unreadable one fails its own job before any batch), detected
    in the collector's next batch (alone if its message was delivered before: its last delivery may
    have killed the process), and its result built here, for its own job."""
    started = time.time()
    image = decode_image(BlobStore(settings.blob_dir).get(request.blob_key))
    limit, alone = settings.task_time_limit_s, _delivered_before(request)
    if alone:
        log.info("job %s: delivered before, detected in a batch of its own", request.job_id)
    try:
        out, current = collector.submit(image, alone=alone, timeout_s=limit)
    except TimedOut:
        raise TimedOut(f"the detector took longer than its time limit ({limit} s) on this photo") from None
    return job_result(request, image, out, current, started, current.min_confidence, settings.open_set_min_probability)


detect = pipeline.stage_task(
    app,
    pipeline.DETECT,
    detect_stored if BATCH == 1 else detect_stored_batched,
    settings,
    log,
    expected=(BlobNotFound, ImageUnreadable) if BATCH == 1 else (BlobNotFound, ImageUnreadable, TimedOut),
)


class _OneAtATime:
    """The detector for a video task in a batching worker: each frame's `detect` waits for the model
    while a batch of photos runs (the runtimes' sessions take one call at a time)."""

    def __init__(self, current: SignDetector) -> None:
        self._current = current

    def detect(self, *args: Any, **kwargs: Any) -> DetectorOutput:
        with model_lock:
            return self._current.detect(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current, name)


def video_detector() -> SignDetector:
    """The detector a video task runs: this child's (a batching worker's, one caller at a time)."""
    return detector() if BATCH == 1 else cast(SignDetector, _OneAtATime(detector()))


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
        video_detector(),
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
