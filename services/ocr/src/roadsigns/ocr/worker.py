"""Celery app of the OCR pool (queue `ocr`), CPU only.

celery -A roadsigns.ocr.worker worker -Q ocr --concurrency 2
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init

from roadsigns.ocr.reader import SignReader
from roadsigns.ocr.service import read_job
from roadsigns.ocr.video import read_video
from roadsigns.shared import pipeline
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import MODEL_INFO, serve_worker_metrics
from roadsigns.shared.perchild import PerChild
from roadsigns.shared.schemas import DetectResult, JobResult, VideoDetectResult, VideoResult
from roadsigns.shared.settings import get_settings
from roadsigns.shared.tasks import make_celery

settings = get_settings()
log = setup_logging("ocr")
app = make_celery("roadsigns-ocr", settings)


def _load() -> SignReader:
    """ONNX Runtime's sessions and thread pools are not safe to share across fork: one per child."""
    built = SignReader(
        settings.ocr_languages,
        settings.ocr_min_confidence,
        settings.ocr_learned_readers,
        settings.open_set_min_probability,
    )
    MODEL_INFO.labels("ocr", built.version).set(1)
    return built


reader = PerChild(_load).warm()


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    serve_worker_metrics(settings.metrics_port)


def read(request: DetectResult) -> JobResult:
    """Every detection read and named by this child's readers."""
    return read_job(request, reader())


ocr = pipeline.stage_task(app, pipeline.OCR, read, settings, log)


def read_tracks(request: VideoDetectResult) -> VideoResult:
    """Every track of a video read on its sharpest crops and named by this child's readers."""
    return read_video(request, reader(), settings.open_set_min_probability)


ocr_video = pipeline.stage_task(app, pipeline.OCR_VIDEO, read_tracks, settings, log)
