"""Celery app of the detector pool (queue `detect`). Run one process per GPU.

celery -A roadsigns.detector.worker worker -Q detect --concurrency 1
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init

from roadsigns.detector.model import SignDetector
from roadsigns.detector.service import ImageUnreadable, build_detector, detect_job
from roadsigns.shared import pipeline
from roadsigns.shared.blobstore import BlobNotFound, BlobStore
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import serve_worker_metrics
from roadsigns.shared.perchild import PerChild
from roadsigns.shared.schemas import DetectRequest, DetectResult
from roadsigns.shared.settings import get_settings
from roadsigns.shared.tasks import make_celery

settings = get_settings()
log = setup_logging("detector")
app = make_celery("roadsigns-detector", settings)


def _load() -> SignDetector:
    detector = build_detector(settings)
    log.info("models loaded in %.1f s: %s", detector.load_seconds, detector.versions)
    return detector


detector = PerChild(_load).warm()


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    serve_worker_metrics(settings.metrics_port)


def detect_stored(request: DetectRequest) -> DetectResult:
    """The uploaded photo, from the blob store, through the detector."""
    return detect_job(request, BlobStore(settings.blob_dir).get(request.blob_key), detector())


detect = pipeline.stage_task(
    app, pipeline.DETECT, detect_stored, settings, log, expected=(BlobNotFound, ImageUnreadable)
)
