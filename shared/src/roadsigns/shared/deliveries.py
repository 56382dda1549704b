"""Poison jobs: how many times a stage's message for a job has been delivered.

With late acks and reject-on-worker-lost, a task whose process dies (a SIGKILL, the OOM
killer, a segfault in a native library) goes back to the queue and is delivered again. A
photo that kills the worker every time would be redelivered for ever, and the detector pool
(one process per GPU) would do nothing else. So each delivery of a stage's task for a job is
counted in Redis (the broker, which every worker already reaches) before the work starts; a
delivery that finds the count above `ROADSIGNS_MAX_DELIVERIES` means that many earlier ones
died mid-task: the job is failed with that reason and the message acknowledged (dropped).

The count is per job and stage, across the reconciler's attempts, and expires after a day.
"""

from __future__ import annotations

from collections.abc import Callable

import redis
import redis.client

TTL_S = 24 * 3600


def key(stage: str, job_id: str) -> str:
    return f"roadsigns:deliveries:{stage}:{job_id}"


Also = Callable[[redis.client.Pipeline], object]


def count(client: redis.Redis, stage: str, job_id: str, also: Also | None = None) -> int:
    """Count this delivery; return how many there have been, this one included. `also` adds
    commands of the caller's to the same round trip."""
    with client.pipeline() as pipe:
        pipe.incr(key(stage, job_id))
        pipe.expire(key(stage, job_id), TTL_S)
        if also is not None:
            also(pipe)
        delivered = pipe.execute()[0]
    return int(delivered)


def poison_reason(who: str, crashes: int) -> str:
    return f"{who} crashed on this photo {crashes} times (its process died mid-task each time); it was not tried again"


class DeliveryCounter:
    """One Redis connection per worker process, made on first use (after the fork)."""

    def __init__(self, broker_url: str, max_deliveries: int) -> None:
        self.broker_url, self.max_deliveries = broker_url, max_deliveries
        self._client: redis.Redis | None = None

    def poisoned(self, stage: str, job_id: str, who: str, also: Also | None = None) -> str | None:
        """The reason to give up on this job, when earlier deliveries of this stage all died; `who`
        names the stage in it ("the detector"). `also`: as for `count`."""
        if self._client is None:
            self._client = redis.Redis.from_url(self.broker_url, socket_timeout=5)
        delivered = count(self._client, stage, job_id, also)
        if delivered > self.max_deliveries:
            return poison_reason(who, delivered - 1)
        return None
