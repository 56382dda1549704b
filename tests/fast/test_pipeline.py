"""The pipeline module: its messages, its routing, and the stage task every pool runs, in this
process against the real Redis (Celery's own message format) and a real Postgres."""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

import pytest
import redis
from celery.exceptions import TimeLimitExceeded
from sqlalchemy import Engine

from roadsigns.shared import pipeline
from roadsigns.shared.db.models import Job
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.perchild import PerChild
from roadsigns.shared.pipeline import DETECT, FINISH, OCR, STAGES, StageFailed, StageStarted
from roadsigns.shared.schemas import Detection, DetectRequest, DetectResult, JobResult, JobStatus, SignResult
from roadsigns.shared.settings import Settings
from roadsigns.shared.tasks import TaskName, make_celery
from roadsigns.tracker import service
from tests.fast.test_tracker import _job, _status

LOG = logging.getLogger("roadsigns.test")
DETECTION = Detection(
    bbox=[1, 2, 30, 40],
    class_id=2,
    class_name="speed limit 50",
    category="prohibitory",
    confidence=0.8,
    detector_confidence=0.9,
    class_probability=0.89,
    crop_png_b64="iVBORw0KGgo=",
)


def detected(request: DetectRequest) -> DetectResult:
    return DetectResult(
        job_id=request.job_id,
        attempt=request.attempt,
        submitted_at=request.submitted_at,
        detections=[DETECTION],
        timings_ms={"queue_wait_ms": 1.0, "detect_ms": 20.0, "classify_ms": 3.0},
        model_versions={"detector": "d1"},
        image_size=[640, 480],
    )


def named(request: DetectResult) -> JobResult:
    signs = [
        SignResult(
            **d.model_dump(exclude={"detector_confidence", "class_probability", "crop_png_b64"}),
            text="50",
            text_confidence=90,
        )
        for d in request.detections
    ]
    return JobResult(
        job_id=request.job_id,
        attempt=request.attempt,
        submitted_at=request.submitted_at,
        signs=signs,
        crops_png_b64=[d.crop_png_b64 for d in request.detections],
        timings_ms={**request.timings_ms, "ocr_ms": 2.0},
        model_versions={**request.model_versions, "ocr": "o1"},
        image_size=request.image_size,
    )


def test_every_message_carries_job_and_attempt_and_survives_the_wire() -> None:
    request = DetectRequest(job_id="a" * 32, blob_key="uploads/a.jpg", submitted_at=1.5, attempt=2)
    messages = [
        request,
        detected(request),
        named(detected(request)),
        StageStarted(job_id="a" * 32, attempt=2, stage="ocr", status=JobStatus.READING),
        StageFailed(job_id="a" * 32, attempt=2, stage="detect", error="detector: no such blob"),
    ]
    for message in messages:
        wire = json.loads(json.dumps(message.model_dump(mode="json")))  # what Celery's JSON serializer carries
        assert wire["job_id"] == "a" * 32 and wire["attempt"] == 2
        assert type(message).model_validate(wire) == message


def test_the_stage_list_routes_each_result_to_the_stage_that_takes_it() -> None:
    assert [s.name for s in STAGES] == ["detect", "ocr", "finish"]
    assert pipeline.next_stage(DETECT) is OCR and pipeline.next_stage(OCR) is FINISH
    assert pipeline.next_stage(FINISH) is None
    assert (DETECT.takes, OCR.takes, FINISH.takes) == (DetectRequest, DetectResult, JobResult)
    assert pipeline.stage_named("ocr") is OCR
    # In process (the CLI): the same list, each function on the one before's result, up to the missing finish.
    result = pipeline.run_in_process(
        DetectRequest(job_id="b" * 32, blob_key="-", submitted_at=0), {"detect": detected, "ocr": named}
    )
    assert isinstance(result, JobResult)
    assert result.job_id == "b" * 32 and [s.text for s in result.signs] == ["50"]
    assert result.model_versions == {"detector": "d1", "ocr": "o1"} and result.image_size == [640, 480]
    # From a later stage on: only what follows it runs.
    assert pipeline.run_in_process(
        detected(DetectRequest(job_id="c", blob_key="-", submitted_at=0)), {"ocr": named}
    ).signs


def sent(url: str, queue: str) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in `queue`, oldest first, as Celery wrote them to Redis."""
    out = []
    for raw in reversed(redis.Redis.from_url(url).lrange(queue, 0, -1)):
        message = json.loads(raw)
        args, _, _ = json.loads(base64.b64decode(message["body"]))
        out.append((message["headers"]["task"], args))
    return out


def apply_to_postgres(db: Engine, url: str) -> None:
    """What the tracker does with what the stage tasks left: its `progress` task (beat) with the
    started marks in Redis, its `fail` task with the StageFailed messages (roadsigns.tracker.worker)."""
    service.mark_stages(db, pipeline.take_started(redis.Redis.from_url(url)))
    for name, (payload,) in sent(url, "track"):
        if name == TaskName.TRACK_FAIL:
            failed = StageFailed.model_validate(payload)
            service.fail(db, failed.job_id, failed.error, failed.attempt)


def test_a_stage_marks_its_status_and_sends_its_result_to_the_next_stage(broker: str) -> None:
    app = make_celery("probe", Settings(broker_url=broker))
    task = pipeline.stage_task(app, DETECT, detected, Settings(broker_url=broker), LOG)
    task(DetectRequest(job_id="d" * 32, blob_key="uploads/d.jpg", submitted_at=0).model_dump(mode="json"))
    # No tracker task for the mark: it waits in Redis for the tracker's next batch.
    assert sent(broker, "track") == []
    [started] = pipeline.take_started(redis.Redis.from_url(broker))
    assert (started.job_id, started.stage, started.status) == ("d" * 32, "detect", JobStatus.DETECTING)
    assert pipeline.take_started(redis.Redis.from_url(broker)) == []  # taken once
    [(name, [forwarded])] = sent(broker, "ocr")
    assert name == TaskName.OCR and DetectResult.model_validate(forwarded).detections == [DETECTION]


def test_a_job_starts_at_the_first_stage_whoever_sends_it(broker: str) -> None:
    """The gateway and the reconciler send a new job's first message through `pipeline.start`: neither
    names the detect task."""
    app = make_celery("probe", Settings(broker_url=broker))
    request = DetectRequest(job_id="e" * 32, blob_key="uploads/e.jpg", submitted_at=0, attempt=2)
    pipeline.start(app, request, retry=True, retry_policy={"max_retries": 1})
    [(name, [payload])] = sent(broker, "detect")
    assert name == TaskName.DETECT and DetectRequest.model_validate(payload) == request
    with pytest.raises(TypeError, match="stage detect takes DetectRequest"):
        pipeline.start(app, detected(request))


def test_started_marks_reach_postgres_in_one_batch_forward_only_and_within_their_attempt(
    broker: str,
    engine: Engine,
) -> None:
    client = redis.Redis.from_url(broker)
    fresh, done, retried = _job(engine), _job(engine, JobStatus.DONE), _job(engine)
    with session_scope(engine) as s:
        s.get(Job, retried).attempts = 2  # the reconciler re-sent it: attempt 1's marks are stale
    for job_id, stage, attempt in [
        (fresh, OCR, 1),
        (fresh, DETECT, 1),  # late, after the OCR stage's: must not move the job back
        (done, DETECT, 1),  # a redelivery after the result: must not reopen it
        (retried, DETECT, 1),
    ]:
        with client.pipeline() as pipe:
            pipeline.push_started(
                pipe, stage, DetectRequest(job_id=job_id, blob_key="-", submitted_at=0, attempt=attempt)
            )
            pipe.execute()
    client.rpush(pipeline.PROGRESS_KEY, b"not a mark")  # dropped, not the batch
    marks = pipeline.take_started(client)
    assert len(marks) == 4 and client.llen(pipeline.PROGRESS_KEY) == 0
    assert service.mark_stages(engine, marks) == 1
    assert (_status(engine, fresh), _status(engine, done), _status(engine, retried)) == ("reading", "done", "queued")
    assert service.mark_stages(engine, marks) == 0  # the same batch again changes nothing


def test_a_failing_stage_fails_the_job_naming_the_stage(broker: str, engine: Engine) -> None:
    def broken(request: DetectResult) -> JobResult:
        raise RuntimeError("the reader's session is gone")

    app = make_celery("probe", Settings(broker_url=broker))
    task = pipeline.stage_task(app, OCR, broken, Settings(broker_url=broker), LOG)
    job_id = _job(engine)
    task(detected(DetectRequest(job_id=job_id, blob_key="-", submitted_at=0)).model_dump(mode="json"))
    [(name, [failed])] = sent(broker, "track")
    assert name == TaskName.TRACK_FAIL and StageFailed.model_validate(failed).stage == "ocr"
    assert sent(broker, "ocr") == []

    apply_to_postgres(engine, broker)
    assert _status(engine, job_id) == "failed"
    with session_scope(engine) as s:
        assert s.get(Job, job_id).error == "ocr: RuntimeError: the reader's session is gone"


def test_every_stage_fails_its_job_on_a_poisoned_delivery_and_on_its_time_limit(broker: str) -> None:
    settings = Settings(broker_url=broker, max_deliveries=1, task_time_limit_s=7)
    app = make_celery("probe", settings)
    task = pipeline.stage_task(app, OCR, named, settings, LOG)
    payload = detected(DetectRequest(job_id="e" * 32, blob_key="-", submitted_at=0)).model_dump(mode="json")
    task(payload)  # the first delivery runs
    task(payload)  # the second means the first one's process died
    failed = [
        StageFailed.model_validate(args[0]) for name, args in sent(broker, "track") if name == TaskName.TRACK_FAIL
    ]
    assert [f.error for f in failed] == [
        "the OCR reader crashed on this photo 1 times (its process died mid-task each time); it was not tried again"
    ]
    assert [name for name, _ in sent(broker, "track")].count(TaskName.TRACK_FINISH) == 1

    # The hard time limit kills the child; Celery calls on_failure in the parent.
    redis.Redis.from_url(broker).flushdb()
    task.on_failure(TimeLimitExceeded(7), "task-id", (payload,), {}, None)
    [(name, [message])] = sent(broker, "track")
    assert name == TaskName.TRACK_FAIL
    assert (
        StageFailed.model_validate(message).error
        == "the OCR reader took longer than its time limit (7 s) on this photo"
    )


def test_a_per_child_resource_is_built_once_per_process_and_never_inherited_across_fork() -> None:
    builds: list[int] = []

    def build() -> int:
        builds.append(os.getpid())
        return os.getpid()

    resource = PerChild(build)
    assert resource() == resource() == os.getpid() and len(builds) == 1
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a worker child: the parent's instance is not its own
        os.write(write, str(resource()).encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert int(os.read(read, 32)) == child
    assert resource() == os.getpid() and len(builds) == 1  # the parent's is untouched
