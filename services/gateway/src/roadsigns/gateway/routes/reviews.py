"""The review queue: the caller's signs a person should check, and their decisions (roadsigns.shared.reviews)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from roadsigns.gateway.auth import CallerDep, Tenant
from roadsigns.gateway.deps import ServicesDep, SessionDep
from roadsigns.shared import classes
from roadsigns.shared.db import reviews as queue
from roadsigns.shared.db.models import Job, Review, Sign
from roadsigns.shared.reviews import ReviewDecision, ReviewItem, ReviewOut, ReviewPage, SignClassOut, reasons

log = logging.getLogger(__name__)
router = APIRouter(prefix="/reviews", tags=["reviews"])

ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, description="a queued sign's id, as GET /reviews gives it")]


def _item(sign: Sign, job: Job, below: float, link: Callable[[str], str]) -> ReviewItem:
    return ReviewItem(
        id=sign.id,
        job_id=job.id,
        sign_index=sign.index,
        bbox=[sign.x1, sign.y1, sign.x2, sign.y2],
        class_id=sign.class_id,
        class_name=sign.class_name,
        category=sign.category,
        class_source=sign.class_source,
        confidence=sign.confidence,
        text=sign.text,
        text_confidence=sign.text_confidence,
        text_matches_class=sign.text_matches_class,
        reasons=reasons(sign.confidence, sign.text_matches_class, sign.class_id, sign.class_source, below),
        image_url=link(f"/jobs/{job.id}/image"),
        crop_url=link(f"/jobs/{job.id}/signs/{sign.index}/crop") if sign.crop_key else None,
        image_width=job.image_width,
        image_height=job.image_height,
        created_at=job.created_at,
    )


def review_out(review: Review) -> ReviewOut:
    box = [review.x1, review.y1, review.x2, review.y2]
    return ReviewOut(
        id=review.id,
        item_id=review.sign_id,
        job_id=review.job_id,
        decision=review.decision,
        class_id=review.class_id,
        class_name=review.class_name,
        text=review.text,
        bbox=None if None in box else box,
        reviewer=review.reviewer,
        reviewed_at=review.reviewed_at,
    )


@router.get("", response_model=ReviewPage)
def list_reviews(
    session: SessionDep,
    services: ServicesDep,
    tenant: Tenant,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ReviewPage:
    """The caller's queued signs without a decision, oldest job first: low confidence, a reading
    that disagrees with the class, or a sign outside the 43 classes."""
    below = services.settings.review_below
    rows, total = queue.pending(session, tenant, below, limit, offset)
    link = services.links.for_tenant(tenant)
    return ReviewPage(items=[_item(s, j, below, link) for s, j in rows], total=total, limit=limit, offset=offset)


@router.get("/classes", response_model=list[SignClassOut])
def list_classes() -> list[SignClassOut]:
    """The 43 classes a reviewer may pick from (a sign outside them takes a free class_name)."""
    return [SignClassOut(id=c.id, name=c.name, category=c.category) for c in classes.all_classes()]


def _named(class_id: int | None, class_name: str | None) -> str | None:
    return classes.get(class_id).name if class_id is not None else class_name


def _record(sign: Sign, job: Job, body: ReviewDecision, caller: CallerDep) -> Review:
    """The decision as a row: the sign as the reviewer says it is, with its box."""
    review = Review(tenant=caller.tenant, job_id=job.id, decision=body.decision, reviewer=caller.key_id)
    if body.decision == "missed":
        assert body.bbox is not None  # ReviewDecision requires it
        x1, y1, x2, y2 = body.bbox
        width, height = job.image_width or 0, job.image_height or 0
        if width and height and (x2 > width or y2 > height):
            box = f"[{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
            raise HTTPException(422, f"bbox {box} reaches outside the {width}x{height} photo")
        review.x1, review.y1, review.x2, review.y2 = body.bbox
        review.class_id, review.class_name = body.class_id, _named(body.class_id, body.class_name)
        review.text = body.text or ""
        return review
    review.sign_id = sign.id
    if body.decision == "not_a_sign":
        return review
    review.x1, review.y1, review.x2, review.y2 = sign.x1, sign.y1, sign.x2, sign.y2
    if body.decision == "accept" or (body.class_id is None and body.class_name is None):  # accept, or only the text
        review.class_id, review.class_name = sign.class_id, sign.class_name
    else:
        review.class_id, review.class_name = body.class_id, _named(body.class_id, body.class_name)
    review.text = sign.text if body.text is None else body.text
    return review


@router.post(
    "/{item_id}",
    status_code=201,
    response_model=ReviewOut,
    responses={
        404: {"description": "no such item in the caller's queue"},
        409: {"description": "this sign already has a decision"},
        422: {"description": "the decision does not fit (missing or extra fields, a box outside the photo)"},
    },
)
def review_item(item_id: ItemId, body: ReviewDecision, session: SessionDep, caller: CallerDep) -> JSONResponse:
    """Decide on a queued sign: accept, correct (class and/or text), not a sign; or report a sign
    the detector missed on the same photo. Records who (the API key's id) and when."""
    found = queue.sign(session, caller.tenant, item_id)
    if found is None:
        raise HTTPException(404, f"no review item {item_id}")
    sign, job = found
    if body.decision != "missed" and (earlier := queue.decision_on(session, sign.id)) is not None:
        raise HTTPException(
            409,
            f"item {item_id} was already reviewed ({earlier.decision}, by {earlier.reviewer} "
            f"at {earlier.reviewed_at.isoformat()})",
        )
    review = _record(sign, job, body, caller)
    session.add(review)
    try:
        session.flush()
    except IntegrityError:  # another reviewer decided on it a moment ago
        raise HTTPException(409, f"item {item_id} was already reviewed") from None
    session.refresh(review)
    log.info("review %s of item %s (job %s): %s by %s", review.id, item_id, job.id, body.decision, caller.key_id)
    return JSONResponse(review_out(review).model_dump(mode="json"), status_code=201)
