"""Job bookkeeping as plain functions over a SQLAlchemy engine. Every one is idempotent.

Messages can arrive late, twice, or out of order (late acks, redelivery, several
tracker processes). So a status only moves forward, and `finish` replaces a job's
signs in one transaction instead of appending them.
"""

from __future__ import annotations

import base64
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import redis
from sqlalchemy import CursorResult, Engine, Result, delete, select, update

from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.db.models import Job, Sign
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.gpxtrack import VideoGpx
from roadsigns.shared.pipeline import StageStarted
from roadsigns.shared.schemas import (
    STATUS_RANK,
    TERMINAL,
    DetectRequest,
    JobMessage,
    JobResult,
    JobStatus,
    VideoRequest,
    VideoResult,
)

log = logging.getLogger(__name__)


def now() -> datetime:
    return datetime.now(UTC)


def mark_stage(engine: Engine, job_id: str, status: JobStatus, attempt: int | None = None) -> bool:
    """Move a job forward to a running stage; ignore anything that would move it back, and
    messages of an earlier attempt (`attempt`: None for any)."""
    behind = [s.value for s, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
    with session_scope(engine) as s:
        result = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.in_(behind), *_current(attempt))
            .values(status=status.value, updated_at=now())
        )
        return _changed(result) > 0


def mark_stages(engine: Engine, marks: Iterable[StageStarted]) -> int:
    """`mark_stage` for a batch of marks in one transaction, one UPDATE per status and attempt,
    the furthest status first (a job marked twice in the batch moves once); returns how many
    rows moved."""
    groups: dict[tuple[JobStatus, int], set[str]] = defaultdict(set)
    frames: dict[tuple[str, int], tuple[int, int]] = {}  # a video's newest count of frames analysed
    for mark in marks:
        groups[(mark.status, mark.attempt)].add(mark.job_id)
        if mark.frames_done is not None and mark.frames_total is not None:
            key = (mark.job_id, mark.attempt)
            frames[key] = max(frames.get(key, (0, 0)), (mark.frames_done, mark.frames_total))
    moved = 0
    with session_scope(engine) as s:
        for (job_id, attempt), (done, total) in sorted(frames.items()):
            active = [st.value for st in STATUS_RANK if st not in TERMINAL]
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(active), *_current(attempt))
                .values(frames_done=done, frames_total=total)
            )
        for (status, attempt), job_ids in sorted(groups.items(), key=lambda g: -STATUS_RANK[g[0][0]]):
            behind = [st.value for st, rank in STATUS_RANK.items() if rank < STATUS_RANK[status]]
            result = s.execute(
                update(Job)
                .where(Job.id.in_(sorted(job_ids)), Job.status.in_(behind), *_current(attempt))
                .values(status=status.value, updated_at=now())
            )
            moved += _changed(result)
    return moved


def _changed(result: Result[Any]) -> int:
    """Rows an UPDATE changed: Session.execute is typed to return any Result, an UPDATE's is a CursorResult."""
    return cast(CursorResult[Any], result).rowcount


def _current(attempt: int | None) -> list[Any]:
    """A message belongs to the job's current attempt, or to none: the reconciler re-sent the job
    (attempts + 1) after giving that one up, and what it does now must not finish or fail it."""
    return [] if attempt is None else [Job.attempts <= attempt]


def fail(engine: Engine, job_id: str, error: str, attempt: int | None = None) -> bool:
    """Mark a job failed with a readable reason, unless it already finished or the message is stale."""
    with session_scope(engine) as s:
        result = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.status.notin_([t.value for t in TERMINAL]), *_current(attempt))
            .values(status=JobStatus.FAILED.value, error=error[:2000], updated_at=now(), finished_at=now())
        )
        return _changed(result) > 0


@dataclass
class Finished:
    job_id: str
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    first_time: bool
    has_callback: bool = False


def finish(engine: Engine, store: BlobStore, request: JobResult) -> Finished | None:
    """Write a job's signs and mark it done. A second delivery rewrites the same rows."""
    finished_at = now()
    with session_scope(engine) as s:
        job = s.execute(select(Job).where(Job.id == request.job_id).with_for_update()).scalar_one_or_none()
        if job is None:
            log.warning("finish for unknown job %s ignored", request.job_id)
            return None
        if job.status == JobStatus.FAILED.value:
            log.info("job %s already failed; late result ignored", request.job_id)
            return None
        if request.attempt < job.attempts:
            log.info("job %s: result of attempt %d ignored (now %d)", request.job_id, request.attempt, job.attempts)
            return None
        first_time = job.status != JobStatus.DONE.value
        s.execute(delete(Sign).where(Sign.job_id == job.id))
        for i, (sign, crop) in enumerate(zip(request.signs, request.crops_png_b64, strict=False)):
            key = store.put(f"crops/{job.id}/{i}.png", base64.b64decode(crop))
            x1, y1, x2, y2 = sign.bbox
            s.add(
                Sign(
                    job_id=job.id,
                    index=i,
                    x1=x1,
                    y1=y1,
                    x2=x2,
                    y2=y2,
                    class_id=sign.class_id,
                    class_name=sign.class_name,
                    category=sign.category,
                    confidence=sign.confidence,
                    text=sign.text,
                    text_confidence=sign.text_confidence,
                    text_matches_class=sign.text_matches_class,
                    class_source=sign.class_source,
                    crop_key=key,
                )
            )
        return _mark_done(job, request.timings_ms, request.model_versions, first_time, finished_at)


def finish_video(engine: Engine, store: BlobStore, request: VideoResult) -> Finished | None:
    """Write a video job's tracks (each best frame's crop to the blob store; each placed where the
    video's GPX track, stored with the job at upload, has the camera at its best frame) and mark it
    done, then delete the detector's segments of it. A second delivery rewrites the same document and crops."""
    finished_at = now()
    with session_scope(engine) as s:
        job = s.execute(select(Job).where(Job.id == request.job_id).with_for_update()).scalar_one_or_none()
        if job is None or job.status == JobStatus.FAILED.value or request.attempt < job.attempts:
            log.info("video result for job %s ignored (unknown, failed, or of an earlier attempt)", request.job_id)
            return None
        first_time = job.status != JobStatus.DONE.value
        gpx = VideoGpx.from_json(job.gpx_track) if job.gpx_track else None
        tracks = []
        for track, crop in zip(request.tracks, request.crops_png_b64, strict=True):
            key = store.put(f"crops/{job.id}/track-{track.track_id}.png", base64.b64decode(crop))
            fix = gpx.position(track.best_frame_s) if gpx is not None else None
            out = track.model_dump(mode="json", exclude={"crop_url", "location"})
            tracks.append({**out, "crop": key, "location": fix.location() if fix is not None else None})
        job.video_result = {
            "frames_analysed": request.frames_analysed,
            "duration_s": request.duration_s,
            "tracks": tracks,
        }
        job.frames_done = job.frames_total = request.frames_analysed
        done = _mark_done(job, request.timings_ms, request.model_versions, first_time, finished_at)
    # The detector's per-segment detections (roadsigns.detector.segments) are spent once the tracks are written.
    store.delete_tree(f"segments/{request.job_id}")
    return done


def _mark_done(
    job: Job, timings_ms: dict[str, float], model_versions: dict[str, str], first_time: bool, finished_at: datetime
) -> Finished:
    """Mark a job done, photo or video. A redelivered result keeps the first delivery's
    finish time and total, so a replay never moves a job's figures."""
    created = job.created_at if job.created_at.tzinfo else job.created_at.replace(tzinfo=UTC)
    timings = {k: round(v, 1) for k, v in timings_ms.items()}
    if first_time or job.finished_at is None:
        timings["total_ms"] = round((finished_at - created).total_seconds() * 1000, 1)
    else:
        timings["total_ms"] = (job.timings_ms or {}).get("total_ms", 0.0)
        finished_at = job.finished_at
    job.status = JobStatus.DONE.value
    job.timings_ms = timings
    job.model_versions = model_versions
    job.finished_at = finished_at
    job.updated_at = now()
    job.error = None
    return Finished(job.id, timings, model_versions, first_time, bool(job.callback_url))


def first_message(job_id: str, kind: str, blob_key: str, fps: float | None, attempt: int) -> JobMessage:
    """A job's first message, as the gateway sent it: a photo's DetectRequest, a video's VideoRequest."""
    if kind == "video":
        return VideoRequest(
            job_id=job_id, blob_key=blob_key, submitted_at=now().timestamp(), fps=fps or 5.0, attempt=attempt
        )
    return DetectRequest(job_id=job_id, blob_key=blob_key, submitted_at=now().timestamp(), attempt=attempt)


def reconcile(
    engine: Engine,
    send_detect: Callable[[JobMessage], None],
    stale_after_s: float,
    max_attempts: int,
    in_broker: Callable[[], set[str]] = set,
    on_failed: Callable[[str], None] | None = None,
) -> dict[str, int]:
    """Re-enqueue jobs whose message is gone; fail those that keep getting lost.

    Postgres is the source of truth: when Redis loses a message (a restart without
    persistence, a crash between commit and send), this is what brings the job back.
    A job that made no progress for `stale_after_s` is only re-sent when the broker holds
    no message for it (`in_broker`: job ids waiting in a queue or taken by a worker):
    a job waiting its turn behind a long backlog is slow, not lost.
    """
    cutoff = now() - timedelta(seconds=stale_after_s)
    active = [JobStatus.QUEUED.value, JobStatus.DETECTING.value, JobStatus.READING.value]
    counts = {"requeued": 0, "failed": 0, "waiting": 0}
    with session_scope(engine) as s:
        stale = (
            s.execute(
                select(Job)
                .where(Job.status.in_(active), Job.updated_at < cutoff)
                .order_by(Job.updated_at)
                .limit(500)
                .with_for_update(skip_locked=True)
            )
            .scalars()
            .all()
        )
        present = in_broker() if stale else set()
        requeue, failed = [], []
        for job in stale:
            if job.id in present:
                counts["waiting"] += 1
                continue
            if job.attempts >= max_attempts:
                job.error = (
                    f"gave up after {job.attempts} attempts: the job's message was lost while it was "
                    f"{job.status}, each time after {stale_after_s:.0f} s without progress"
                )
                job.status = JobStatus.FAILED.value
                job.finished_at = now()
                failed.append(job.id)
            else:
                job.attempts += 1
                job.status = JobStatus.QUEUED.value
                requeue.append(first_message(job.id, job.kind, job.blob_key, job.video_fps, job.attempts))
            job.updated_at = now()
    counts["requeued"], counts["failed"] = len(requeue), len(failed)
    for message in requeue:
        send_detect(message)
    if on_failed:
        for job_id in failed:
            on_failed(job_id)
    return counts


_JOB_ID = re.compile(rb"[0-9a-f]{32}")


def broker_job_ids(client: redis.Redis, queues: list[str]) -> set[str]:
    """Job ids named by any message waiting in `queues` or taken but not acknowledged.

    Kombu's Redis transport keeps each queue as a list and messages in flight in the
    `unacked` hash; Celery writes a task's arguments in clear in its `argsrepr` header,
    where a job id (32 hex digits; Celery's own ids have dashes) can be found.
    """
    raw: list[bytes] = []
    for queue in queues:
        raw.extend(cast(list[bytes], client.lrange(queue, 0, -1)))  # redis-py types sync and async as one
    raw.extend(cast(list[bytes], client.hvals("unacked")))
    return {m.decode() for message in raw for m in _JOB_ID.findall(message)}
