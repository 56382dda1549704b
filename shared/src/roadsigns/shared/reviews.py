"""The review queue: which signs a person should check, and what a person may decide about one.

A done sign is queued when its confidence is below `ROADSIGNS_REVIEW_BELOW`, when its reading
disagrees with its class (a "30" read on a 50 sign), or when it is open-set (none of the 43
classes, or named by its reading or its shape rather than by the classifier). The queue is
derived when it is read (`roadsigns.shared.db.reviews`), from the signs the tracker already
stores; only the decisions are written (the `reviews` table). So a changed threshold applies
to every job at once, and no worker knows about reviews.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from roadsigns.shared import classes

Reason = Literal["low_confidence", "reading_disagrees", "open_set"]
Decision = Literal["accept", "correct", "not_a_sign", "missed"]
REASONS: tuple[Reason, ...] = ("low_confidence", "reading_disagrees", "open_set")


def reasons(
    confidence: float, text_matches_class: bool | None, class_id: int | None, class_source: str, below: float
) -> list[Reason]:
    """Why a sign is queued; empty: it is not. `db.reviews.queued` is the same rule in SQL."""
    out: list[Reason] = []
    if confidence < below:
        out.append("low_confidence")
    if text_matches_class is False:
        out.append("reading_disagrees")
    if class_id is None or class_source != "classifier":
        out.append("open_set")
    return out


def class_named(name: str) -> int | None:
    """The id of the one of the 43 classes called `name` (case and spaces ignored), else None."""
    wanted = " ".join(name.lower().split())
    return next((c.id for c in classes.all_classes() if c.name.lower() == wanted), None)


Coordinate = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]


def _printable(value: str | None, field: str) -> str | None:
    """Postgres refuses NUL, UTF-8 a lone surrogate; a control character in a name or a reading is a mistake."""
    if value is not None and any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValueError(f"{field} must not contain control characters")
    return value


class ReviewDecision(BaseModel):
    """`POST /reviews/{id}`: what the reviewer says about the queued sign.

    - `accept`: the sign is what was proposed. Nothing else.
    - `correct`: the sign is another class (`class_id`, one of the 43; or `class_name`, a free
      name for a sign outside them) and/or reads `text`. At least one of the three.
    - `not_a_sign`: the box holds no sign. Nothing else.
    - `missed`: a sign the detector did not find on the same photo: `bbox` (pixels of the photo,
      [x1, y1, x2, y2]) and its class (`class_id` or `class_name`), `text` if it carries any.
      The queued sign itself stays queued.
    """

    model_config = ConfigDict(extra="forbid")

    decision: Decision
    class_id: int | None = Field(None, ge=0, le=42, description="one of the 43 classes")
    class_name: str | None = Field(
        None, min_length=1, max_length=128, description="a sign outside the 43 classes, e.g. 'speed limit 40'"
    )
    text: str | None = Field(None, max_length=200, description="what the sign reads; empty: no text")
    bbox: list[Coordinate] | None = Field(
        None, min_length=4, max_length=4, description="missed only: [x1, y1, x2, y2] in the photo's pixels"
    )

    @field_validator("class_name", "text")
    @classmethod
    def _no_control_characters(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _printable(value, info.field_name or "")

    @model_validator(mode="after")
    def _fits_the_decision(self) -> ReviewDecision:
        given = [f for f in ("class_id", "class_name", "text", "bbox") if getattr(self, f) is not None]
        if self.decision in ("accept", "not_a_sign") and given:
            raise ValueError(f"{self.decision} takes no {', '.join(given)}: send only the decision")
        if self.class_id is not None and self.class_name is not None:
            raise ValueError("give class_id (one of the 43) or class_name (a sign outside them), not both")
        if self.class_name is not None:
            self.class_name = " ".join(self.class_name.split())
            if not self.class_name:
                raise ValueError("class_name must not be blank")
            known = class_named(self.class_name)  # a free name that is one of the 43 is that class
            if known is not None:
                self.class_id, self.class_name = known, None
        if self.decision == "correct":
            if self.bbox is not None:
                raise ValueError("correct takes no bbox: the box is the sign's; a sign elsewhere is 'missed'")
            if self.class_id is None and self.class_name is None and self.text is None:
                raise ValueError("correct needs class_id, class_name or text")
        if self.decision == "missed":
            if self.bbox is None:
                raise ValueError("missed needs bbox: [x1, y1, x2, y2] in the photo's pixels")
            x1, y1, x2, y2 = self.bbox
            if x2 - x1 < 1 or y2 - y1 < 1:
                raise ValueError("bbox must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1, in pixels")
            if self.class_id is None and self.class_name is None:
                raise ValueError("missed needs class_id (one of the 43) or class_name (a sign outside them)")
        return self


class SignClassOut(BaseModel):
    """One of the 43 classes, for a reviewer's list (GET /reviews/classes)."""

    id: int
    name: str
    category: str


class ReviewItem(BaseModel):
    """A queued sign: what the pipeline proposed, where, and why a person should look at it."""

    id: int = Field(description="the item to POST /reviews/{id} a decision on")
    job_id: str
    sign_index: int = Field(description="the sign's place in the job's `signs`")
    bbox: list[float] = Field(description="[x1, y1, x2, y2] in the photo's pixels")
    class_id: int | None
    class_name: str
    category: str
    class_source: str
    confidence: float
    text: str
    text_confidence: float
    text_matches_class: bool | None = None
    reasons: list[Reason] = Field(description="why it is queued")
    image_url: str = Field(description="the photo, a signed link")
    crop_url: str | None = Field(None, description="the sign's crop, a signed link")
    image_width: int | None = None
    image_height: int | None = None
    created_at: datetime = Field(description="when the job was submitted")


class ReviewPage(BaseModel):
    items: list[ReviewItem]
    total: int
    limit: int
    offset: int


class ReviewOut(BaseModel):
    """A recorded decision: who (the API key's id) and when."""

    id: int
    item_id: int | None = Field(description="the queued sign; null for a missed sign")
    job_id: str
    decision: Decision
    class_id: int | None = None
    class_name: str | None = None
    text: str | None = None
    bbox: list[float] | None = None
    reviewer: str = Field(description="the API key's id (the first 12 hex digits of its SHA-256), or 'anonymous'")
    reviewed_at: datetime
