"""Reading and creating jobs in Postgres (the gateway never writes a job's progress)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from roadsigns.shared.db.models import Job
from roadsigns.shared.schemas import JobOut, JobStatus, SignOut


def new_job_id() -> str:
    """122 random bits: job ids are unguessable, so knowing one is the right to read it."""
    return uuid.uuid4().hex


def create(
    session: Session, job_id: str, filename: str | None, content_type: str, blob_key: str, width: int, height: int
) -> Job:
    job = Job(
        id=job_id,
        status=JobStatus.QUEUED.value,
        filename=filename,
        content_type=content_type,
        blob_key=blob_key,
        image_width=width,
        image_height=height,
        attempts=1,
    )
    session.add(job)
    session.flush()
    return job


def get(session: Session, job_id: str) -> Job | None:
    return session.execute(select(Job).where(Job.id == job_id).options(selectinload(Job.signs))).scalar_one_or_none()


def page(session: Session, limit: int, offset: int, status: JobStatus | None) -> tuple[list[Job], int]:
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if status is not None:
        query = query.where(Job.status == status.value)
        count = count.where(Job.status == status.value)
    jobs = session.execute(query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)).scalars().all()
    return list(jobs), int(session.execute(count).scalar_one())


def to_out(job: Job, with_signs: bool = True) -> JobOut:
    links = {"self": f"/jobs/{job.id}", "image": f"/jobs/{job.id}/image"}
    signs = None
    if with_signs and job.status == JobStatus.DONE.value:
        signs = [
            SignOut(
                bbox=[s.x1, s.y1, s.x2, s.y2],
                class_id=s.class_id,
                class_name=s.class_name,
                category=s.category,
                confidence=s.confidence,
                text=s.text,
                text_confidence=s.text_confidence,
                text_matches_class=s.text_matches_class,
                crop_url=f"/jobs/{job.id}/signs/{s.index}/crop" if s.crop_key else None,
            )
            for s in job.signs
        ]
    return JobOut(
        id=job.id,
        status=JobStatus(job.status),
        filename=job.filename,
        created_at=job.created_at,
        updated_at=job.updated_at,
        finished_at=job.finished_at,
        image_width=job.image_width,
        image_height=job.image_height,
        attempts=job.attempts,
        error=job.error,
        signs=signs,
        timings_ms=job.timings_ms if job.status == JobStatus.DONE.value else None,
        model_versions=job.model_versions,
        links=links,
    )
