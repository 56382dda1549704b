"""Celery app of the detector pool (queue `detect`). Run one process per GPU.

celery -A roadsigns.detector.worker worker -Q detect --concurrency 1
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.signals import worker_init, worker_process_init

from roadsigns.detector.model import SignDetector
from roadsigns.detector.service import ImageUnreadable, build_detector, detect_job
from roadsigns.shared.blobstore import BlobNotFound, BlobStore
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import STAGE_SECONDS, TASK_FAILURES, serve_worker_metrics
from roadsigns.shared.schemas import DetectRequest, JobStatus
from roadsigns.shared.settings import get_settings
from roadsigns.shared.tasks import TaskName, make_celery

settings = get_settings()
log = setup_logging("detector")
app = make_celery("roadsigns-detector", settings)


class DetectorTask(Task):
    """Holds the model; built on first use inside the worker child, never in the parent."""

    _detector: SignDetector | None = None

    @property
    def detector(self) -> SignDetector:
        if DetectorTask._detector is None:
            DetectorTask._detector = build_detector(settings)
            log.info(
                "models loaded in %.1f s: %s", DetectorTask._detector.load_seconds, DetectorTask._detector.versions
            )
        return DetectorTask._detector


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    serve_worker_metrics(settings.metrics_port)


@worker_process_init.connect
def _load_models(**_: Any) -> None:
    DetectorTask().detector  # noqa: B018 - warm the model before the first task arrives


@app.task(name=TaskName.DETECT, base=DetectorTask, bind=True)
def detect(self: DetectorTask, payload: dict[str, Any]) -> None:
    request = DetectRequest.model_validate(payload)
    app.send_task(TaskName.TRACK_STAGE, args=[request.job_id, JobStatus.DETECTING, request.attempt])
    try:
        image = BlobStore(settings.blob_dir).get(request.blob_key)
        result = detect_job(request, image, self.detector)
    except (BlobNotFound, ImageUnreadable) as exc:
        TASK_FAILURES.labels("detect").inc()
        app.send_task(TaskName.TRACK_FAIL, args=[request.job_id, f"detector: {exc}", request.attempt])
        return
    except Exception as exc:
        TASK_FAILURES.labels("detect").inc()
        log.exception("job %s: detection failed", request.job_id)
        app.send_task(
            TaskName.TRACK_FAIL, args=[request.job_id, f"detector: {type(exc).__name__}: {exc}", request.attempt]
        )
        return
    STAGE_SECONDS.labels("queue_wait").observe(result.timings_ms["queue_wait_ms"] / 1000)
    STAGE_SECONDS.labels("detect").observe(result.timings_ms["detect_ms"] / 1000)
    STAGE_SECONDS.labels("classify").observe(result.timings_ms["classify_ms"] / 1000)
    app.send_task(TaskName.OCR, args=[result.model_dump(mode="json")])
