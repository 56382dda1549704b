"""Queue and task names, and the Celery configuration every worker shares.

Processes send tasks by name (`app.send_task(TaskName.DETECT, ...)`), so the gateway
never imports worker code, and each pool consumes only its own queue.
"""

from __future__ import annotations

from enum import StrEnum

from celery import Celery

from roadsigns.shared.settings import Settings


class Queue(StrEnum):
    DETECT = "detect"
    OCR = "ocr"
    TRACK = "track"
    WEBHOOK = "webhook"  # a pool of its own: a slow receiver never holds up a job's bookkeeping


class TaskName(StrEnum):
    DETECT = "roadsigns.detect"
    OCR = "roadsigns.ocr"
    DETECT_VIDEO = "roadsigns.detect.video"
    DETECT_VIDEO_SEGMENT = "roadsigns.detect.video_segment"
    OCR_VIDEO = "roadsigns.ocr.video"
    TRACK_FINISH_VIDEO = "roadsigns.track.finish_video"
    TRACK_STAGE = "roadsigns.track.stage"  # one StageStarted; stage tasks now batch theirs (TRACK_PROGRESS)
    TRACK_PROGRESS = "roadsigns.track.progress"
    TRACK_FINISH = "roadsigns.track.finish"
    TRACK_FAIL = "roadsigns.track.fail"
    TRACK_MLFLOW = "roadsigns.track.mlflow"  # a run per job, sent by the previous release; now dropped
    MLFLOW_WINDOWS = "roadsigns.track.mlflow_windows"  # beat: a window's aggregates per model version
    TRACK_WEBHOOK = "roadsigns.track.webhook"
    RECONCILE = "roadsigns.track.reconcile"
    RETENTION = "roadsigns.track.retention"


ROUTES = {
    TaskName.DETECT: Queue.DETECT,
    TaskName.OCR: Queue.OCR,
    TaskName.DETECT_VIDEO: Queue.DETECT,
    TaskName.DETECT_VIDEO_SEGMENT: Queue.DETECT,
    TaskName.OCR_VIDEO: Queue.OCR,
    TaskName.TRACK_FINISH_VIDEO: Queue.TRACK,
    TaskName.TRACK_STAGE: Queue.TRACK,
    TaskName.TRACK_PROGRESS: Queue.TRACK,
    TaskName.TRACK_FINISH: Queue.TRACK,
    TaskName.TRACK_FAIL: Queue.TRACK,
    TaskName.TRACK_MLFLOW: Queue.TRACK,
    TaskName.MLFLOW_WINDOWS: Queue.TRACK,
    TaskName.TRACK_WEBHOOK: Queue.WEBHOOK,
    TaskName.RECONCILE: Queue.TRACK,
    TaskName.RETENTION: Queue.TRACK,
}


def make_celery(name: str, settings: Settings) -> Celery:
    """A Celery app configured for long ML tasks whose results live in Postgres, not Celery."""
    app = Celery(name, broker=settings.broker_url)
    app.conf.update(
        task_routes={str(k): {"queue": str(v)} for k, v in ROUTES.items()},
        task_default_queue=str(Queue.TRACK),
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # A task is acknowledged only when it finished; a worker killed mid-task gives it back.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One task at a time per process, so the queue length tells the autoscaler the truth.
        worker_prefetch_multiplier=1,
        # A child loads its model before saying it is up; Celery's default 4 s wait made a
        # slow load (a busy CPU, CUDA start-up) kill and respawn the child for ever.
        worker_proc_alive_timeout=180,
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        task_time_limit=settings.task_time_limit_s,
        worker_send_task_events=True,
        # No "task-sent" event: it is one more Redis round trip on every upload, the gateway's
        # hot path. Flower shows each task from the moment a worker receives it; how long it
        # waited is in the job's timings and the queue depth in Grafana.
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )
    return app
