"""Celery app of the tracker pool (queue `track`), plus the reconciler's schedule.

celery -A roadsigns.tracker.worker worker -Q track --concurrency 2
celery -A roadsigns.tracker.worker beat            # runs the reconciler, progress, retention and MLflow windows
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpcore
import redis
from celery import Task
from celery.signals import worker_init
from sqlalchemy import Engine

from roadsigns.shared import pipeline
from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.callbacks import CallbackRefused
from roadsigns.shared.db.session import get_engine
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.metrics import JOBS_FINISHED, SIGNS_FOUND, STAGE_SECONDS, serve_worker_metrics
from roadsigns.shared.perchild import PerChild
from roadsigns.shared.pipeline import StageFailed, StageStarted, take_started
from roadsigns.shared.schemas import JobMessage, JobResult, VideoResult
from roadsigns.shared.settings import get_settings
from roadsigns.shared.tasks import Queue, TaskName, make_celery
from roadsigns.tracker import retention, service, webhooks

if TYPE_CHECKING:
    from roadsigns.tracker.mlflow_log import WindowLogger

settings = get_settings()
log = setup_logging("tracker")
app = make_celery("roadsigns-tracker", settings)
app.conf.beat_schedule = {
    "reconcile": {"task": str(TaskName.RECONCILE), "schedule": settings.reconcile_every_s},
    # Expires: while the tracker is down, the ticks that pile up are skipped, not all run.
    "progress": {
        "task": str(TaskName.TRACK_PROGRESS),
        "schedule": settings.progress_every_s,
        "options": {"expires": max(10.0, 10 * settings.progress_every_s)},
    },
}
if settings.mlflow_tracking_uri:
    # Every minute (or window, if shorter): a closed window is logged within a minute of settling.
    every = min(60.0, float(settings.mlflow_window_s))
    app.conf.beat_schedule["mlflow"] = {
        "task": str(TaskName.MLFLOW_WINDOWS),
        "schedule": every,
        "options": {"expires": every},
    }
if settings.retention_days:
    app.conf.beat_schedule["retention"] = {"task": str(TaskName.RETENTION), "schedule": settings.retention_every_s}


def engine() -> Engine:
    return get_engine(settings.database_url, "roadsigns-tracker")


def _window_logger() -> WindowLogger:
    from roadsigns.tracker.mlflow_log import WindowLogger

    return WindowLogger(settings.mlflow_tracking_uri or "", settings.mlflow_experiment)


window_logger = PerChild(_window_logger)  # built by the first MLflow tick of a child; never warmed: MLflow is optional
broker = PerChild(lambda: redis.Redis.from_url(settings.broker_url, socket_timeout=5))


@worker_init.connect
def _serve_metrics(**_: Any) -> None:
    serve_worker_metrics(settings.metrics_port)


def _legacy(payload: dict[str, Any] | str, field: str, rest: tuple[Any, ...]) -> dict[str, Any]:
    """A message as a dict; a worker of the previous release, during a rolling upgrade, still sends
    (job_id, status or error, attempt) by position."""
    if isinstance(payload, dict):
        return payload
    return {"job_id": payload, field: rest[0], "attempt": rest[1] if len(rest) > 1 else 1, "stage": "?"}


@app.task(name=TaskName.TRACK_STAGE)
def stage(payload: dict[str, Any] | str, *legacy: Any) -> None:
    started = StageStarted.model_validate(_legacy(payload, "status", legacy))
    service.mark_stage(engine(), started.job_id, started.status, started.attempt)


@app.task(name=TaskName.TRACK_PROGRESS)
def progress() -> int:
    """Write the started marks the stage tasks left in Redis, in one transaction (beat runs this
    every ROADSIGNS_PROGRESS_EVERY_S); returns how many jobs moved."""
    marks = take_started(broker())
    return service.mark_stages(engine(), marks) if marks else 0


def _notify(job_id: str) -> None:
    app.send_task(TaskName.TRACK_WEBHOOK, args=[job_id])


@app.task(name=TaskName.TRACK_FAIL)
def fail(payload: dict[str, Any] | str, *legacy: Any) -> None:
    failed = StageFailed.model_validate(_legacy(payload, "error", legacy))
    if service.fail(engine(), failed.job_id, failed.error, failed.attempt):
        JOBS_FINISHED.labels("failed").inc()
        log.warning("job %s failed in %s: %s", failed.job_id, failed.stage, failed.error)
        _notify(failed.job_id)


@app.task(name=TaskName.TRACK_FINISH)
def finish(payload: dict[str, Any]) -> None:
    request = JobResult.model_validate(payload)
    done = service.finish(engine(), BlobStore(settings.blob_dir), request)
    if done is None or not done.first_time:
        return
    JOBS_FINISHED.labels("done").inc()
    if done.has_callback:
        _notify(done.job_id)
    for sign in request.signs:
        SIGNS_FOUND.labels(sign.class_name).inc()
    STAGE_SECONDS.labels("total").observe(done.timings_ms["total_ms"] / 1000)


@app.task(name=TaskName.TRACK_FINISH_VIDEO)
def finish_video(payload: dict[str, Any]) -> None:
    request = VideoResult.model_validate(payload)
    done = service.finish_video(engine(), BlobStore(settings.blob_dir), request)
    if done is None or not done.first_time:
        return
    JOBS_FINISHED.labels("done").inc()
    if done.has_callback:
        _notify(done.job_id)
    for track in request.tracks:
        SIGNS_FOUND.labels(track.class_name).inc()


@app.task(name=TaskName.TRACK_MLFLOW)
def log_job_to_mlflow(*_: Any) -> None:
    """A previous release's finish sent each job here for a run of its own. Dropped: the job is in
    Postgres, and reaches MLflow in its window's aggregates (`mlflow_windows`)."""


@app.task(name=TaskName.MLFLOW_WINDOWS)
def mlflow_windows() -> int:
    """Log the closed windows' aggregates to MLflow (beat, every minute); returns the runs logged.

    Idempotent: a window's runs are looked up before it is logged (mlflow_log.log_windows), and
    the lock keeps two ticks (a slow one and the next, or a redelivery) from logging at once. An
    MLflow that is down loses nothing: the next tick logs the windows it missed.
    """
    if not settings.mlflow_tracking_uri:
        return 0
    from roadsigns.tracker.mlflow_log import log_windows

    lock = broker().lock("roadsigns:mlflow-windows", timeout=600, blocking=False)
    if not lock.acquire():
        return 0
    try:
        logged = log_windows(engine(), window_logger(), settings.mlflow_window_s, datetime.now(UTC))
    except Exception as exc:  # MLflow down or slow: one line a minute, not a traceback; the next tick catches up
        log.warning("MLflow windows not logged (%s: %s); the next tick retries", type(exc).__name__, exc)
        return 0
    finally:
        lock.release()
    for summary in logged:
        log.info("MLflow: window %s, models %s: %s", summary.window.tag, summary.models, summary.metrics()["jobs"])
    return len(logged)


_DELIVERY_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    ssl.SSLError,
    OSError,
)


@app.task(name=TaskName.TRACK_WEBHOOK, bind=True, max_retries=None)
def webhook(self: Task[Any, None], job_id: str) -> None:
    """POST the finished job to its callback_url; retry with exponential backoff, record the outcome."""
    target = webhooks.payload(engine(), job_id)
    if target is None:
        return
    url, body, tenant = target
    attempt = self.request.retries + 1
    try:
        status = webhooks.deliver(
            url,
            body,
            webhooks.secret_for(tenant, settings.webhook_secrets, settings.webhook_secret),
            settings.webhook_timeout_s,
            settings.webhook_max_response_bytes,
            settings.callback_allow_private,
        )
        outcome = f"delivered: HTTP {status}" if 200 <= status < 300 else f"HTTP {status}"
    except CallbackRefused as exc:  # not retried: the address is not one this service calls
        webhooks.record(engine(), job_id, f"refused: {exc}", attempt)
        log.warning("job %s: callback refused: %s", job_id, exc)
        return
    except _DELIVERY_ERRORS as exc:
        status, outcome = 0, f"{type(exc).__name__}: {exc}"
    if 200 <= status < 300:
        webhooks.record(engine(), job_id, outcome, attempt)
        return
    if attempt >= settings.webhook_max_attempts:
        webhooks.record(engine(), job_id, f"failed after {attempt} attempts: {outcome}", attempt)
        return
    webhooks.record(engine(), job_id, f"retrying: {outcome}", attempt)
    raise self.retry(countdown=min(300, 2 ** (attempt - 1)))


@app.task(name=TaskName.RECONCILE)
def reconcile() -> dict[str, int]:
    def send(req: JobMessage) -> None:
        pipeline.start(app, req)

    def in_broker() -> set[str]:
        with redis.Redis.from_url(settings.broker_url, socket_timeout=5) as client:
            return service.broker_job_ids(client, [str(q) for q in Queue])

    counts = service.reconcile(
        engine(), send, settings.stale_after_s, settings.max_attempts, in_broker=in_broker, on_failed=_notify
    )
    if counts["requeued"] or counts["failed"]:
        log.warning("reconciler: %s", counts)
        JOBS_FINISHED.labels("failed").inc(counts["failed"])
    return counts


@app.task(name=TaskName.RETENTION)
def purge_old_jobs() -> dict[str, int]:
    """Delete finished jobs older than ROADSIGNS_RETENTION_DAYS, their blobs, and orphan blobs."""
    if not settings.retention_days:
        return {}
    counts = retention.purge(engine(), BlobStore(settings.blob_dir), settings.retention_days)
    if any(counts.values()):
        log.info("retention (%s days): %s", settings.retention_days, counts)
    return counts
