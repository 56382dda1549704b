"""Celery app of the detector pool (queue `detect`). Run one process per GPU.

celery -A roadsigns.detector.worker worker -Q detect --concurrency 1
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init

from roadsigns.detector.service import ImageUnreadable, detect_job
from roadsigns.detector.serving import serving
from roadsigns.shared import pipeline
from roadsigns.shared.blobstore import BlobNotFound, BlobStore
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import serve_worker_metrics
from roadsigns.shared.schemas import DetectRequest, DetectResult
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
