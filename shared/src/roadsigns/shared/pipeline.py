"""The pipeline as one object: the stage list, the messages around it, and the task every stage runs in.

A job goes detect → ocr → finish. Each stage is a plain function from its input message to
its result (`detect_job`, `read_job`); it does not know which stage comes next. This module
does: `next_stage` routes a result to the stage that takes it, `stage_task` turns a stage's
function into its Celery task, and `run_in_process` runs the same list in one process (the
CLI). The tracker's `finish` is the last stage: it writes the result to Postgres.

Adding a stage between two others: a `Stage` in `STAGES` (with its task name and route in
`tasks.py`), its function, and a worker module calling `stage_task`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.client
from celery import Celery, Task
from celery.exceptions import TimeLimitExceeded
from pydantic import ValidationError

from roadsigns.shared.deliveries import DeliveryCounter
from roadsigns.shared.metrics import STAGE_SECONDS, TASK_FAILURES
from roadsigns.shared.schemas import (
    DetectRequest,
    DetectResult,
    JobMessage,
    JobResult,
    JobStatus,
    VideoDetectResult,
    VideoRequest,
    VideoResult,
    VideoSegmentRequest,
)
from roadsigns.shared.settings import Settings
from roadsigns.shared.tasks import TaskName


@dataclass(frozen=True)
class Stage:
    name: str  # the delivery counter's key and the metrics' label
    task: TaskName
    takes: type[JobMessage]  # the message it runs on: the previous stage's result
    who: str  # how a failure names it: "the detector took longer than its time limit"
    error_prefix: str  # "detector: ImageUnreadable: ..."
    status: JobStatus | None = None  # the job's status while it runs; None: no progress mark
    timings: tuple[str, ...] = ()  # its keys in the result's timings_ms ("detect" for detect_ms), observed as metrics


DETECT = Stage(
    "detect",
    TaskName.DETECT,
    DetectRequest,
    "the detector",
    "detector",
    JobStatus.DETECTING,
    ("queue_wait", "detect", "classify"),
)
OCR = Stage("ocr", TaskName.OCR, DetectResult, "the OCR reader", "ocr", JobStatus.READING, ("ocr",))
FINISH = Stage("finish", TaskName.TRACK_FINISH, JobResult, "the tracker", "tracker")
STAGES = (DETECT, OCR, FINISH)
# A video goes the same way through the same pools, as other messages: the detector splits it
# into time segments (one for a short video), detector tasks detect the signs in each segment's
# sampled frames at once and the last of them to finish tracks them over the whole video
# (roadsigns.detector.video, .worker), the reader reads each track's sharpest crops
# (roadsigns.ocr.video), the tracker writes the tracks.
DETECT_VIDEO = Stage(
    "detect_video", TaskName.DETECT_VIDEO, VideoRequest, "the detector", "detector", JobStatus.DETECTING
)
DETECT_VIDEO_SEGMENT = Stage(
    "detect_video_segment",
    TaskName.DETECT_VIDEO_SEGMENT,
    VideoSegmentRequest,
    "the detector",
    "detector",
    JobStatus.DETECTING,
    ("detect",),
)
OCR_VIDEO = Stage(
    "ocr_video", TaskName.OCR_VIDEO, VideoDetectResult, "the OCR reader", "ocr", JobStatus.READING, ("ocr",)
)
FINISH_VIDEO = Stage("finish_video", TaskName.TRACK_FINISH_VIDEO, VideoResult, "the tracker", "tracker")
VIDEO_STAGES = (DETECT_VIDEO, DETECT_VIDEO_SEGMENT, OCR_VIDEO, FINISH_VIDEO)
LINES = (STAGES, VIDEO_STAGES)


class StageStarted(JobMessage):
    """A stage began work on the job: move its status forward (never back). Stage tasks leave
    these in Redis (`PROGRESS_KEY`), for the tracker to write in batches (`take_started`)."""

    stage: str
    status: JobStatus
    # A video's detector leaves a mark every few seconds with the frames analysed so far and in all.
    frames_done: int | None = None
    frames_total: int | None = None


class StageFailed(JobMessage):
    """A stage gave up on the job; `error` is what the API shows."""

    stage: str
    error: str


def stage_named(name: str) -> Stage:
    return next(s for line in LINES for s in line if s.name == name)


def _line(stage: Stage) -> tuple[Stage, ...]:
    return next(line for line in LINES if stage in line)


def next_stage(stage: Stage) -> Stage | None:
    """The stage that takes this one's result; None after the last."""
    line = _line(stage)
    i = line.index(stage)
    return line[i + 1] if i + 1 < len(line) else None


def send(app: Celery, stage: Stage, message: JobMessage, **options: Any) -> None:
    """Send `message` to `stage`, which must take that type; `options` go to Celery's `send_task`
    (the gateway's `retry_policy`, for one)."""
    if not isinstance(message, stage.takes):
        raise TypeError(f"stage {stage.name} takes {stage.takes.__name__}, not {type(message).__name__}")
    app.send_task(stage.task, args=[message.model_dump(mode="json")], argsrepr=_argsrepr(message), **options)


def _argsrepr(message: JobMessage) -> str:
    """What Flower and the task events show as a task's arguments, and where the reconciler finds
    a message's job id (tracker `broker_job_ids`): the message's type, job and attempt. Celery's
    own, a truncated repr of the whole message, walked a detector result's inline crops on every
    send, a sixth of the cost of a send."""
    return f"{type(message).__name__}(job_id={message.job_id!r}, attempt={message.attempt})"


def start(app: Celery, request: JobMessage, **options: Any) -> None:
    """Send a job's first message to the first stage: a new job (the gateway), or one sent again
    (the reconciler). Neither names that stage: a photo's and a video's differ by their message."""
    line = next((line for line in LINES if isinstance(request, line[0].takes)), STAGES)
    send(app, line[0], request, **options)  # a message neither first stage takes: refused by `send`


# Stage progress goes to Postgres without a tracker task per stage: each stage task pushes its
# StageStarted onto this list in the round trip that counts its delivery, and the tracker's
# `progress` task (beat, every ROADSIGNS_PROGRESS_EVERY_S) writes them all in one transaction.
# A mark only ever moves a status forward, within its attempt: one lost (a Redis restart, a
# tracker killed mid-batch), repeated or late changes no result, which only `finish` writes.
PROGRESS_KEY = "roadsigns:progress"
PROGRESS_CAP = 100_000  # the newest marks kept while nothing drains the list (beat down)


def push_started(pipe: redis.client.Pipeline, stage: Stage, request: JobMessage) -> None:
    """Add the stage's started mark to a Redis pipeline (a stage without a status has none)."""
    if stage.status is not None:
        mark = StageStarted(job_id=request.job_id, attempt=request.attempt, stage=stage.name, status=stage.status)
        pipe.rpush(PROGRESS_KEY, mark.model_dump_json())
        pipe.ltrim(PROGRESS_KEY, -PROGRESS_CAP, -1)


def take_started(client: redis.Redis, limit: int = 5000) -> list[StageStarted]:
    """Remove and return up to `limit` of the oldest marks, atomically: two tracker processes
    never take the same one. One that does not parse is dropped, not the batch."""
    with client.pipeline() as pipe:  # MULTI/EXEC
        pipe.lrange(PROGRESS_KEY, 0, limit - 1)
        pipe.ltrim(PROGRESS_KEY, limit, -1)
        raw, _ = pipe.execute()
    marks = []
    for entry in raw:
        try:
            marks.append(StageStarted.model_validate_json(entry))
        except ValidationError:
            logging.getLogger(__name__).warning("progress mark dropped: %r", entry[:200])
    return marks


def push_frames(client: redis.Redis, stage: Stage, request: JobMessage, done: int, total: int) -> None:
    """A started mark with a video's frames analysed so far and in all (the tracker writes both)."""
    assert stage.status is not None
    mark = StageStarted(
        job_id=request.job_id,
        attempt=request.attempt,
        stage=stage.name,
        status=stage.status,
        frames_done=done,
        frames_total=total,
    )
    with client.pipeline(transaction=False) as pipe:
        pipe.rpush(PROGRESS_KEY, mark.model_dump_json())
        pipe.ltrim(PROGRESS_KEY, -PROGRESS_CAP, -1)
        pipe.execute()


def send_failed(app: Celery, stage: Stage, request: JobMessage, error: str) -> None:
    message = StageFailed(job_id=request.job_id, attempt=request.attempt, stage=stage.name, error=error)
    app.send_task(TaskName.TRACK_FAIL, args=[message.model_dump(mode="json")], argsrepr=_argsrepr(message))


def run_in_process(request: JobMessage, steps: Mapping[str, Callable[[Any], JobMessage]]) -> JobMessage:
    """Run the stages in order in this process, from the one that takes `request`, each on the one
    before's result, as long as `steps` has a function for the stage; return the last result."""
    stage: Stage | None = next(s for line in LINES for s in line if type(request) is s.takes)
    message = request
    while stage is not None and stage.name in steps:
        message = steps[stage.name](message)
        stage = next_stage(stage)
    return message


class StageTask(Task[Any, None]):
    """The Celery task class of every stage; `stage` is set per task by `stage_task`."""

    stage: Stage

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Celery calls this in the parent when the hard time limit killed the child: say so on the
        job (the message is acknowledged, so nothing else would)."""
        if isinstance(exc, TimeLimitExceeded) and args:
            request = JobMessage.model_validate(args[0])
            limit = self.time_limit or self.app.conf.task_time_limit
            send_failed(
                self.app,
                self.stage,
                request,
                f"{self.stage.who} took longer than its time limit ({limit} s) on this photo",
            )


# What a stage's function returns: its result, several (a video's segments, each a message to the
# next stage), or None when another task of the stage sends the result on (a video's last segment).
StageOutput = JobMessage | Sequence[JobMessage] | None


def stage_task(
    app: Celery,
    stage: Stage,
    run: Callable[[Any], StageOutput],
    settings: Settings,
    log: logging.Logger,
    expected: tuple[type[Exception], ...] = (),
) -> Task[Any, None]:
    """The Celery task that runs `run` (the stage's plain function) on each of the stage's messages.

    In order: count the delivery and, in the same Redis round trip, leave the stage's started
    mark (`push_started`); drop a poisoned job (earlier deliveries killed their process,
    roadsigns.shared.deliveries); run; on an exception, count
    it and fail the job, naming the stage (an `expected` one without a traceback: a bad photo,
    not a bug); observe the stage's timings; send the result (each, if several; none if None) to
    the next stage. A hard time limit fails the job too (StageTask.on_failure). Deliveries are
    counted per message's `delivery_id`: the job, or a video's segment.
    """
    deliveries = DeliveryCounter(settings.broker_url, settings.max_deliveries)
    after = next_stage(stage)
    if after is None:
        raise ValueError(f"{stage.name} is the last stage: it has no result to send on")

    def task(payload: dict[str, Any]) -> None:
        request = stage.takes.model_validate(payload)
        poisoned = deliveries.poisoned(
            stage.name, request.delivery_id, stage.who, also=lambda pipe: push_started(pipe, stage, request)
        )
        if poisoned:  # earlier deliveries killed their process: fail the job (a mark cannot undo that), drop it
            TASK_FAILURES.labels(stage.name).inc()
            log.error("job %s: %s", request.job_id, poisoned)
            send_failed(app, stage, request, poisoned)
            return
        try:
            result = run(request)
        except expected as exc:
            TASK_FAILURES.labels(stage.name).inc()
            send_failed(app, stage, request, f"{stage.error_prefix}: {exc}")
            return
        except Exception as exc:
            TASK_FAILURES.labels(stage.name).inc()
            log.exception("job %s: %s failed", request.job_id, stage.name)
            send_failed(app, stage, request, f"{stage.error_prefix}: {type(exc).__name__}: {exc}")
            return
        for message in [result] if isinstance(result, JobMessage) else result or []:
            timings = getattr(message, "timings_ms", {})
            for key in stage.timings:
                if f"{key}_ms" in timings:
                    STAGE_SECONDS.labels(key).observe(timings[f"{key}_ms"] / 1000)
            send(app, after, message)

    task.__name__ = task.__qualname__ = stage.name
    task.__doc__ = f"The {stage.name} stage: {run.__doc__ or run.__name__}"
    return app.task(name=str(stage.task), base=StageTask, stage=stage)(task)
