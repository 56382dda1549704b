"""Tracker bookkeeping against a real Postgres: forward-only status, idempotent finish, reconciler."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
from alembic import command
from sqlalchemy import Engine, func, select, text, update

from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.db.migrate import alembic_config
from roadsigns.shared.db.models import Job, Sign
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.db.views import job_to_out
from roadsigns.shared.schemas import DetectRequest, JobResult, JobStatus, SignResult
from roadsigns.tracker import service


def _job(engine: Engine, status: JobStatus = JobStatus.QUEUED) -> str:
    job_id = uuid.uuid4().hex
    with session_scope(engine) as s:
        s.add(Job(id=job_id, status=status.value, blob_key=f"uploads/{job_id}.jpg", attempts=1))
    return job_id


def _finish_request(job_id: str, n: int) -> JobResult:
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    crop = base64.b64encode(png.tobytes()).decode()
    signs = [
        SignResult(
            bbox=[i, i, i + 10, i + 10],
            class_id=2,
            class_name="speed limit 50",
            category="prohibitory",
            confidence=0.9,
            text="50",
            text_confidence=90,
            text_matches_class=True,
        )
        for i in range(n)
    ]
    return JobResult(
        job_id=job_id,
        submitted_at=0,
        signs=signs,
        crops_png_b64=[crop] * n,
        timings_ms={"detect_ms": 10.0, "ocr_ms": 5.0},
        model_versions={"detector": "x"},
    )


def _status(engine: Engine, job_id: str) -> str:
    with session_scope(engine) as s:
        return s.get(Job, job_id).status


def test_status_only_moves_forward(engine: Engine) -> None:
    job_id = _job(engine)
    assert service.mark_stage(engine, job_id, JobStatus.READING)
    assert not service.mark_stage(engine, job_id, JobStatus.DETECTING)  # late message
    assert _status(engine, job_id) == "reading"


def test_finish_twice_writes_each_sign_once(engine: Engine, tmp_path: Path) -> None:
    job_id = _job(engine)
    store = BlobStore(tmp_path)
    first = service.finish(engine, store, _finish_request(job_id, 3))
    again = service.finish(engine, store, _finish_request(job_id, 3))  # a redelivered message
    assert first is not None and first.first_time
    assert again is not None and not again.first_time
    assert again.timings_ms["total_ms"] == first.timings_ms["total_ms"]
    with session_scope(engine) as s:
        assert s.execute(select(func.count()).select_from(Sign).where(Sign.job_id == job_id)).scalar() == 3
    assert _status(engine, job_id) == "done"
    assert store.exists(f"crops/{job_id}/2.png")


def test_failed_job_ignores_a_late_result(engine: Engine, tmp_path: Path) -> None:
    job_id = _job(engine)
    assert service.fail(engine, job_id, "detector: image unreadable")
    assert service.finish(engine, BlobStore(tmp_path), _finish_request(job_id, 1)) is None
    assert not service.fail(engine, job_id, "again")
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        assert job.status == "failed" and job.error == "detector: image unreadable"


def test_a_stale_attempt_can_neither_finish_nor_fail_the_job(engine: Engine, tmp_path: Path) -> None:
    """The reconciler re-sent the job as attempt 2: what attempt 1's messages say now is ignored."""
    job_id = _job(engine)
    with session_scope(engine) as s:
        s.execute(update(Job).where(Job.id == job_id).values(attempts=2))
    stale = _finish_request(job_id, 2)  # attempt 1, the default
    assert service.finish(engine, BlobStore(tmp_path), stale) is None
    assert not service.fail(engine, job_id, "detector: from attempt 1", attempt=1)
    assert not service.mark_stage(engine, job_id, JobStatus.READING, attempt=1)
    assert _status(engine, job_id) == "queued"
    with session_scope(engine) as s:
        assert s.execute(select(func.count()).select_from(Sign).where(Sign.job_id == job_id)).scalar() == 0
    # The current attempt's messages still count.
    assert service.mark_stage(engine, job_id, JobStatus.DETECTING, attempt=2)
    current = _finish_request(job_id, 2)
    current.attempt = 2
    done = service.finish(engine, BlobStore(tmp_path), current)
    assert done is not None and done.first_time and _status(engine, job_id) == "done"


def test_reconciler_requeues_stale_jobs_then_gives_up(engine: Engine) -> None:
    stale, fresh = _job(engine, JobStatus.DETECTING), _job(engine)
    with session_scope(engine) as s:
        s.execute(update(Job).where(Job.id == stale).values(updated_at=func.now() - timedelta(minutes=10)))
    sent: list[DetectRequest] = []
    # While the broker still holds the job's message, it is waiting, not lost.
    counts = service.reconcile(engine, sent.append, stale_after_s=60, max_attempts=2, in_broker=lambda: {stale})
    assert counts == {"requeued": 0, "failed": 0, "waiting": 1} and not sent
    counts = service.reconcile(engine, sent.append, stale_after_s=60, max_attempts=2)
    assert counts == {"requeued": 1, "failed": 0, "waiting": 0}
    assert [r.job_id for r in sent] == [stale] and sent[0].attempt == 2
    assert _status(engine, stale) == "queued" and _status(engine, fresh) == "queued"

    with session_scope(engine) as s:
        s.execute(update(Job).where(Job.id == stale).values(updated_at=func.now() - timedelta(minutes=10)))
    counts = service.reconcile(engine, sent.append, stale_after_s=60, max_attempts=2)
    assert counts == {"requeued": 0, "failed": 1, "waiting": 0}
    with session_scope(engine) as s:
        job = s.get(Job, stale)
        assert job.status == "failed" and "gave up after 2 attempts" in job.error


def test_broker_job_ids_finds_queued_and_unacked_messages() -> None:
    """Against the real Redis and the real Celery message format."""
    import redis

    from roadsigns.shared import pipeline
    from roadsigns.shared.settings import Settings
    from roadsigns.shared.tasks import Queue, make_celery
    from tests.stack import claim_redis_db

    url = f"redis://127.0.0.1:6379/{claim_redis_db()}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    app = make_celery("probe", Settings(broker_url=url))
    queued, taken = uuid.uuid4().hex, uuid.uuid4().hex
    request = DetectRequest(job_id=queued, blob_key="uploads/x.jpg", submitted_at=0)
    pipeline.start(app, request)  # as the gateway sends it: the job in a short argsrepr, not the message
    (sent,) = client.lrange(str(Queue.DETECT), 0, -1)
    assert json.loads(sent)["headers"]["argsrepr"] == f"DetectRequest(job_id='{queued}', attempt=1)"
    # A message a worker has taken sits in the `unacked` hash (delivery tag -> [message, ...]).
    client.hset("unacked", "tag-1", json.dumps([{"headers": {"argsrepr": f"({{'job_id': '{taken}'}},)"}}, "", "ocr"]))
    assert service.broker_job_ids(client, ["detect", "ocr", "track"]) >= {queued, taken}
    client.flushdb()


def test_signs_outside_the_43_classes_are_stored_and_shown(engine: Engine, tmp_path: Path) -> None:
    """class_id null and class_source through the real migrations, the tracker and the API view."""
    job_id = _job(engine)
    request = _finish_request(job_id, 3)
    request.signs[1] = request.signs[1].model_copy(
        update={"class_id": None, "class_name": "speed limit 40", "text": "40", "class_source": "reading"}
    )
    request.signs[2] = request.signs[2].model_copy(
        update={"class_id": None, "class_name": "other sign", "category": "danger", "text": "", "class_source": "shape"}
    )
    assert service.finish(engine, BlobStore(tmp_path), request) is not None
    with session_scope(engine) as s:
        out = job_to_out(s.get(Job, job_id))
    assert [(x.class_id, x.class_name, x.class_source) for x in out.signs] == [
        (2, "speed limit 50", "classifier"),
        (None, "speed limit 40", "reading"),
        (None, "other sign", "shape"),
    ]
    assert out.model_dump(mode="json")["signs"][1]["class_id"] is None


def test_open_set_migration_goes_down_and_up(engine: Engine, tmp_path: Path) -> None:
    """0003 down: signs without a class go (the old schema cannot hold them), the rest stay; up again."""
    job_id = _job(engine)
    request = _finish_request(job_id, 2)
    request.signs[1] = request.signs[1].model_copy(update={"class_id": None, "class_name": "other sign"})
    service.finish(engine, BlobStore(tmp_path), request)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    command.downgrade(cfg, "0002")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT class_id FROM signs")).scalars().all() == [2]
        nullable = conn.execute(
            text("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'signs' AND column_name = :c"),
            {"c": "class_id"},
        ).scalar()
        assert nullable == "NO"
    command.upgrade(cfg, "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT class_source FROM signs")).scalars().all() == ["classifier"]


def test_retention_deletes_old_finished_jobs_their_blobs_and_orphans(engine: Engine, tmp_path: Path) -> None:
    """Against the real database and blob folder: what is older than the retention goes, the rest stays."""
    import os
    import time

    from roadsigns.tracker import retention

    store = BlobStore(tmp_path)
    old_done, new_done, old_running = _job(engine), _job(engine), _job(engine, JobStatus.DETECTING)
    for job_id in (old_done, new_done, old_running):
        store.put(f"uploads/{job_id}.jpg", b"photo")
    for job_id in (old_done, new_done):
        service.finish(engine, store, _finish_request(job_id, 2))
    with session_scope(engine) as s:
        s.execute(update(Job).where(Job.id == old_done).values(finished_at=func.now() - timedelta(days=40)))
        s.execute(update(Job).where(Job.id == old_running).values(created_at=func.now() - timedelta(days=40)))
    # Blobs no job names: one old (a crash between the gateway's write and its insert), one new.
    old_orphan, new_orphan = uuid.uuid4().hex, uuid.uuid4().hex
    store.put(f"uploads/{old_orphan}.png", b"x")
    store.put(f"crops/{old_orphan}/0.png", b"x")
    store.put(f"uploads/{new_orphan}.png", b"x")
    month_ago = time.time() - 40 * 86400
    for key in (f"uploads/{old_orphan}.png", f"crops/{old_orphan}/0.png"):
        os.utime(tmp_path / key, (month_ago, month_ago))

    counts = retention.purge(engine, store, keep_days=30)

    assert counts == {"jobs": 1, "orphan_blobs": 2}
    with session_scope(engine) as s:
        assert s.get(Job, old_done) is None
        assert s.execute(select(func.count()).select_from(Sign).where(Sign.job_id == old_done)).scalar() == 0
        assert s.get(Job, new_done) is not None and s.get(Job, old_running) is not None  # running jobs are kept
    assert not store.exists(f"uploads/{old_done}.jpg") and not (tmp_path / "crops" / old_done).exists()
    assert store.exists(f"uploads/{new_done}.jpg") and store.exists(f"crops/{new_done}/1.png")
    assert store.exists(f"uploads/{old_running}.jpg")
    assert not store.exists(f"uploads/{old_orphan}.png") and not (tmp_path / "crops" / old_orphan).exists()
    assert store.exists(f"uploads/{new_orphan}.png")
