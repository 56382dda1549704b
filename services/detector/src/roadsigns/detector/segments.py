"""A video job split across the detector pool: its segments, where each leaves its detections,
and how the task that detects the last of them knows it is the last.

The pool's `detect_video` task plans the segments (`plan`) and sends one message each; any
detector task takes one, detects its frames (roadsigns.detector.video.detect_frames) and writes
them to the blob store (`blob_key`), then adds its segment's number to a Redis set of the job's
attempt (`mark_detected`). The task whose number completes the set tracks every segment's
frames, in time order, and sends the tracks to the reader; the others send nothing. A set, not
a counter: a segment delivered again (its process died after marking it) counts once, and
finding the set complete it tracks again, which yields the same result (the tracker's
`finish_video` writes a result twice as once), so no job waits on a segment that did finish.
Celery's chords would need a result backend, which these pools do not have (results live in
Postgres). A segment that fails fails the job (`pipeline.stage_task`); the set then never
completes, and its keys expire.
"""

from __future__ import annotations

import redis

from roadsigns.detector.video import VideoInfo, plan_segments
from roadsigns.shared.schemas import VideoRequest, VideoSegmentRequest

TTL_S = 24 * 3600  # a job's marks outlive any task time limit and reconciler attempt


def plan(request: VideoRequest, info: VideoInfo, segment_s: float) -> list[VideoSegmentRequest]:
    """The job's segments of about `segment_s` (`plan_segments`), each a detector task's message."""
    ranges = plan_segments(info.duration_s, segment_s)
    return [
        VideoSegmentRequest(**request.model_dump(), index=i, count=len(ranges), start_s=start, end_s=end)
        for i, (start, end) in enumerate(ranges)
    ]


def blob_key(job_id: str, attempt: int, index: int) -> str:
    """A segment's detections: under segments/<job>/, which the tracker deletes once the job is
    done (roadsigns.tracker.service.finish_video) and retention with the job."""
    return f"segments/{job_id}/{attempt}-{index}.json"


def _key(request: VideoSegmentRequest, what: str) -> str:
    return f"roadsigns:segments:{request.job_id}:{request.attempt}:{what}"


def mark_detected(client: redis.Redis, request: VideoSegmentRequest) -> int:
    """Mark the request's segment detected; return how many of its job's attempt's are. In one
    MULTI: two segments finishing together see 1 and 2 of 2, never both 2."""
    with client.pipeline() as pipe:
        pipe.sadd(_key(request, "done"), request.index)
        pipe.expire(_key(request, "done"), TTL_S)
        pipe.scard(_key(request, "done"))
        *_, done = pipe.execute()
    return int(done)


def record_frames(client: redis.Redis, request: VideoSegmentRequest, done: int) -> int:
    """Note how many frames this segment has detected; return the job's attempt's total over its
    segments (a segment delivered again starts its own count over, it does not add to it)."""
    with client.pipeline() as pipe:
        pipe.hset(_key(request, "frames"), str(request.index), str(done))
        pipe.expire(_key(request, "frames"), TTL_S)
        pipe.hvals(_key(request, "frames"))
        *_, counts = pipe.execute()
    return sum(int(c) for c in counts)
