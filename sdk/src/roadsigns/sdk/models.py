"""The API's response bodies. They mirror the gateway's schemas in `/openapi.json`
(tests/test_sdk.py checks that they stay in step); unknown fields are ignored, so a newer
server does not break an older client."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel


class JobStatus(StrEnum):
    QUEUED = "queued"
    DETECTING = "detecting"
    READING = "reading"
    DONE = "done"
    FAILED = "failed"


TERMINAL = frozenset({JobStatus.DONE, JobStatus.FAILED})


class Location(BaseModel):
    """Where the photo was taken (its EXIF GPS): degrees WGS84, metres, degrees from north."""

    lat: float
    lon: float
    altitude_m: float | None = None
    heading_deg: float | None = None


class Sign(BaseModel):
    bbox: list[float]  # x1, y1, x2, y2 in pixels of the upright image
    class_id: int | None  # None: not one of the 43 classes
    class_name: str
    category: str
    confidence: float
    text: str
    text_confidence: float
    text_matches_class: bool | None = None
    class_source: str = "classifier"
    crop_url: str | None = None
    location: Location | None = None


class Track(BaseModel):
    """One physical sign in a video: named and read over its frames."""

    track_id: int
    class_id: int | None
    class_name: str
    category: str
    text: str
    confidence: float
    first_seen_s: float
    last_seen_s: float
    frames: int  # sampled frames it was seen in
    bbox: list[float]  # in its best frame
    best_frame_s: float
    crop_url: str | None = None
    location: Location | None = None


class Progress(BaseModel):
    """A running video job: frames analysed so far, and in all."""

    frames_done: int
    frames_total: int


class Callback(BaseModel):
    status: str | None = None
    attempts: int = 0


class Job(BaseModel):
    id: str
    status: JobStatus
    filename: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    image_width: int | None = None
    image_height: int | None = None
    attempts: int
    error: str | None = None
    signs: list[Sign] | None = None
    timings_ms: dict[str, float] | None = None
    model_versions: dict[str, str] | None = None
    callback: Callback | None = None
    location: Location | None = None  # only for a photo with EXIF GPS
    links: dict[str, str] = {}
    kind: str = "photo"  # or "video": then progress while it runs, frames_analysed, duration_s and tracks once done
    progress: Progress | None = None
    frames_analysed: int | None = None
    duration_s: float | None = None
    tracks: list[Track] | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class JobPage(BaseModel):
    items: list[Job]
    total: int
    limit: int
    offset: int


# SDK model -> the gateway's schema name in /openapi.json
SCHEMAS: dict[type[BaseModel], str] = {
    Location: "Location",
    Sign: "SignOut",
    Callback: "CallbackOut",
    Track: "VideoTrack",
    Progress: "VideoProgress",
    Job: "JobOut",
    JobPage: "JobPage",
}
