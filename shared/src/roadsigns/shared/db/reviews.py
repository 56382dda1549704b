"""The review queue in SQL: a tenant's done signs that the rules pick and nobody has decided on yet.

Read by the gateway (GET /reviews, POST /reviews/{id}) and by `roadsigns dataset export`; the
rules themselves are `roadsigns.shared.reviews.reasons`, which `queued` mirrors.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Select, false, func, or_, select
from sqlalchemy.orm import Session

from roadsigns.shared.db.models import Job, Review, Sign
from roadsigns.shared.schemas import JobStatus


def queued(below: float) -> ColumnElement[bool]:
    """`reviews.reasons(...)` is not empty."""
    return or_(
        Sign.confidence < below,
        Sign.text_matches_class == false(),
        Sign.class_id.is_(None),
        Sign.class_source != "classifier",
    )


def _pending(tenant: str, below: float) -> Select[Sign, Job]:
    return (
        select(Sign, Job)
        .join(Job, Job.id == Sign.job_id)
        .outerjoin(Review, Review.sign_id == Sign.id)
        .where(Job.tenant == tenant, Job.status == JobStatus.DONE.value, Review.id.is_(None), queued(below))
    )


def pending(session: Session, tenant: str, below: float, limit: int, offset: int) -> tuple[list[tuple[Sign, Job]], int]:
    """A page of the tenant's queue, oldest job first, and the queue's length."""
    query = _pending(tenant, below).order_by(Job.created_at, Job.id, Sign.index).limit(limit).offset(offset)
    rows = [(sign, job) for sign, job in session.execute(query)]
    total = session.execute(select(func.count()).select_from(_pending(tenant, below).subquery())).scalar_one()
    return rows, int(total)


def pending_jobs(session: Session, tenant: str, below: float) -> set[str]:
    """The tenant's jobs that still have a queued sign without a decision."""
    query = _pending(tenant, below).with_only_columns(Sign.job_id).distinct()
    return set(session.execute(query).scalars())


def sign(session: Session, tenant: str, sign_id: int) -> tuple[Sign, Job] | None:
    """One sign of the tenant's done jobs, queued or not; another tenant's is None."""
    query = (
        select(Sign, Job)
        .join(Job, Job.id == Sign.job_id)
        .where(Sign.id == sign_id, Job.tenant == tenant, Job.status == JobStatus.DONE.value)
    )
    row = session.execute(query).first()
    return (row[0], row[1]) if row else None


def decision_on(session: Session, sign_id: int) -> Review | None:
    return session.execute(select(Review).where(Review.sign_id == sign_id)).scalar_one_or_none()


def reviewed_jobs(session: Session, tenant: str) -> list[Job]:
    """The tenant's done jobs with at least one review, oldest first, their signs loaded."""
    reviewed = select(Review.job_id).where(Review.tenant == tenant).distinct()
    query = (
        select(Job)
        .where(Job.tenant == tenant, Job.status == JobStatus.DONE.value, Job.id.in_(reviewed))
        .order_by(Job.created_at, Job.id)
    )
    return list(session.execute(query).scalars())


def reviews_of(session: Session, tenant: str, job_ids: list[str]) -> list[Review]:
    query = select(Review).where(Review.tenant == tenant, Review.job_id.in_(job_ids)).order_by(Review.id)
    return list(session.execute(query).scalars())
