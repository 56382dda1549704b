"""Retention: finished jobs older than `ROADSIGNS_RETENTION_DAYS` go, with their photo and crops,
and so do blobs that no job names any more (a failed insert, a crash between the two deletes).

Rows go first, then their blobs: a crash in between leaves orphan blobs, which the next run's
sweep removes; never a job whose image is gone while its row says otherwise for long.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, func, select

from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.db.models import Job
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.schemas import TERMINAL

# uploads/<job id>.<ext>, crops/<job id>/<index>.png, and a video's segments/<job id>/<attempt>-<n>.json
_JOB_OF_KEY = re.compile(r"^(?:uploads/([0-9a-f]{1,64})\.[a-z]+|(?:crops|segments)/([0-9a-f]{1,64})/.+)$")


def purge(
    engine: Engine, store: BlobStore, keep_days: float, now: datetime | None = None, batch: int = 500
) -> dict[str, int]:
    cutoff = (now or datetime.now(UTC)) - timedelta(days=keep_days)
    counts = {"jobs": 0, "orphan_blobs": 0}
    while True:
        with session_scope(engine) as s:
            rows = s.execute(
                select(Job.id, Job.blob_key)
                .where(
                    Job.status.in_([t.value for t in TERMINAL]),
                    func.coalesce(Job.finished_at, Job.created_at) < cutoff,
                )
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            if rows:
                s.execute(delete(Job).where(Job.id.in_([r.id for r in rows])))  # signs go by ON DELETE CASCADE
        for job_id, blob_key in rows:
            store.delete(blob_key)
            store.delete_tree(f"crops/{job_id}")
            store.delete_tree(f"segments/{job_id}")
        counts["jobs"] += len(rows)
        if len(rows) < batch:
            break
    counts["orphan_blobs"] = _sweep_orphans(engine, store, cutoff)
    return counts


def _sweep_orphans(engine: Engine, store: BlobStore, cutoff: datetime) -> int:
    """Blobs older than the cutoff whose job is not in the database."""
    by_job: dict[str, list[str]] = {}
    for prefix in ("uploads", "crops", "segments"):
        for key in store.older_than(prefix, cutoff.timestamp()):
            match = _JOB_OF_KEY.match(key)
            if match:
                by_job.setdefault(match.group(1) or match.group(2), []).append(key)
    if not by_job:
        return 0
    with session_scope(engine) as s:
        known = set(s.execute(select(Job.id).where(Job.id.in_(list(by_job)))).scalars())
    removed = 0
    for job_id, keys in by_job.items():
        if job_id in known:
            continue
        for key in keys:
            store.delete(key)
            removed += 1
        store.delete_tree(f"crops/{job_id}")
        store.delete_tree(f"segments/{job_id}")
    return removed
