"""Celery app of the detector pool (queue `detect`). Run one process per GPU.

celery -A roadsigns.detector.worker worker -Q detect --concurrency 1
"""

from __future__ import annotations

from typing import Any

from celery import Task
from celery.exceptions import TimeLimitExceeded
from celery.signals import worker_init, worker_process_init

from roadsigns.detector.model import SignDetector
from roadsigns.detector.service import ImageUnreadable, build_detector, detect_job
from roadsigns.shared.blobstore import BlobNotFound, BlobStore
from roadsigns.shared.deliveries import DeliveryCounter
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import STAGE_SECONDS, TASK_FAILURES, serve_worker_metrics
from roadsigns.shared.schemas import DetectRequest, JobStatus
from roadsigns.shared.settings import get_settings
from roadsigns.shared.tasks import TaskName, make_celery

settings = get_settings()
log = setup_logging("detector")
app = make_celery("roadsigns-detector", settings)
deliveries = DeliveryCounter(settings.broker_url, settings.max_deliveries)


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

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Celery calls this in the parent when the hard time limit killed the child: say so on the
        job (the message is acknowledged, so nothing else would)."""
        if isinstance(exc, TimeLimitExceeded) and args:
            request = DetectRequest.model_validate(args[0])
            reason = f"the detector took longer than its time limit ({settings.task_time_limit_s} s) on this photo"
            app.send_task(TaskName.TRACK_FAIL, args=[request.job_id, reason, request.attempt])


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    serve_worker_metrics(settings.metrics_port)


@worker_process_init.connect
def _load_models(**_: Any) -> None:
    DetectorTask().detector  # noqa: B018 - warm the model before the first task arrives


@app.task(name=TaskName.DETECT, base=DetectorTask, bind=True)
def detect(self: DetectorTask, payload: dict[str, Any]) -> None:
    request = DetectRequest.model_validate(payload)
    poisoned = deliveries.poisoned("detect", request.job_id)
    if poisoned:  # earlier deliveries killed their process: fail the job, drop the message
        TASK_FAILURES.labels("detect").inc()
        log.error("job %s: %s", request.job_id, poisoned)
        app.send_task(TaskName.TRACK_FAIL, args=[request.job_id, poisoned, request.attempt])
        return
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
