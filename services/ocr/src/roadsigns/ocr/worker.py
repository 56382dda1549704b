"""Celery app of the OCR pool (queue `ocr`), CPU only.

celery -A roadsigns.ocr.worker worker -Q ocr --concurrency 2
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_process_init

from roadsigns.ocr.reader import SignReader
from roadsigns.ocr.service import read_job
from roadsigns.shared.deliveries import DeliveryCounter
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import MODEL_INFO, STAGE_SECONDS, TASK_FAILURES, serve_worker_metrics
from roadsigns.shared.schemas import JobStatus, OcrRequest
from roadsigns.shared.settings import get_settings
from roadsigns.shared.tasks import TaskName, make_celery

settings = get_settings()
log = setup_logging("ocr")
app = make_celery("roadsigns-ocr", settings)
deliveries = DeliveryCounter(settings.broker_url, settings.max_deliveries)
_reader: SignReader | None = None


def reader() -> SignReader:
    """The readers of this worker child, built on first use, never in the Celery parent:
    ONNX Runtime's sessions and thread pools are not safe to share across fork."""
    global _reader
    if _reader is None:
        _reader = SignReader(
            settings.ocr_languages,
            settings.ocr_min_confidence,
            settings.ocr_learned_readers,
            settings.open_set_min_probability,
        )
        MODEL_INFO.labels("ocr", _reader.version).set(1)
    return _reader


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    serve_worker_metrics(settings.metrics_port)


@worker_process_init.connect
def _load_models(**_: Any) -> None:
    reader()  # warm the readers before the first task arrives


@app.task(name=TaskName.OCR)
def ocr(payload: dict[str, Any]) -> None:
    request = OcrRequest.model_validate(payload)
    poisoned = deliveries.poisoned("ocr", request.job_id)
    if poisoned:  # earlier deliveries killed their process: fail the job, drop the message
        TASK_FAILURES.labels("ocr").inc()
        log.error("job %s: %s", request.job_id, poisoned)
        app.send_task(TaskName.TRACK_FAIL, args=[request.job_id, poisoned, request.attempt])
        return
    app.send_task(TaskName.TRACK_STAGE, args=[request.job_id, JobStatus.READING, request.attempt])
    try:
        result = read_job(request, reader())
    except Exception as exc:
        TASK_FAILURES.labels("ocr").inc()
        log.exception("job %s: OCR failed", request.job_id)
        app.send_task(TaskName.TRACK_FAIL, args=[request.job_id, f"ocr: {type(exc).__name__}: {exc}", request.attempt])
        return
    STAGE_SECONDS.labels("ocr").observe(result.timings_ms["ocr_ms"] / 1000)
    app.send_task(TaskName.TRACK_FINISH, args=[result.model_dump(mode="json")])
