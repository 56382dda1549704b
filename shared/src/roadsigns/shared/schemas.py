"""Messages between the services and the HTTP API's response shapes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from roadsigns.shared.openset import ClassSource


class JobStatus(StrEnum):
    QUEUED = "queued"
    DETECTING = "detecting"
    READING = "reading"
    DONE = "done"
    FAILED = "failed"


# A job's status only moves forward; a late or redelivered message cannot move it back.
STATUS_RANK = {
    JobStatus.QUEUED: 0,
    JobStatus.DETECTING: 1,
    JobStatus.READING: 2,
    JobStatus.DONE: 3,
    JobStatus.FAILED: 3,
}
TERMINAL = {JobStatus.DONE, JobStatus.FAILED}


class JobMessage(BaseModel):
    """What every message between the stages carries: the job, and the attempt it belongs to (the
    reconciler re-sends a lost job as attempt + 1; a message of an earlier attempt changes nothing)."""

    job_id: str
    attempt: int = 1

    @property
    def delivery_id(self) -> str:
        """What the poison counter counts the deliveries of (roadsigns.shared.deliveries): the job,
        or the part of it the message is for (a video's segment)."""
        return self.job_id


class DetectRequest(JobMessage):
    """The pipeline's first message, sent by the gateway and the reconciler."""

    blob_key: str
    submitted_at: float  # unix seconds when the gateway enqueued it


class Detection(BaseModel):
    """One sign found by the detector, its crop inline (crops are a few kB).

    The class is the classifier's top class, however unsure: the OCR stage names the sign
    (roadsigns.shared.openset) once it has read it.
    """

    bbox: list[float] = Field(min_length=4, max_length=4)
    class_id: int | None
    class_name: str
    category: str
    confidence: float  # detector confidence x classifier probability
    detector_confidence: float
    class_probability: float
    crop_png_b64: str


class DetectResult(JobMessage):
    """The detect stage's result: the proposals it keeps, crops inline."""

    submitted_at: float
    detections: list[Detection]
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    image_size: list[int]
    # The reporting threshold on the sign's final confidence, applied by the OCR stage once
    # the sign is named (a reading can name an unsure sign); 0 keeps every detection.
    min_confidence: float = 0.0


class SignResult(BaseModel):
    bbox: list[float]
    class_id: int | None  # None: not one of the 43 classes ("speed limit 40", "other sign")
    class_name: str
    category: str
    confidence: float
    text: str
    text_confidence: float
    text_matches_class: bool | None = None  # None when the class carries no text, or there is no class
    class_source: ClassSource = "classifier"  # what named the sign: the classifier, the reading, or only the shape


class JobResult(JobMessage):
    """A job's result, as the OCR stage leaves it: the reported signs, named, with their crops."""

    submitted_at: float
    signs: list[SignResult]
    crops_png_b64: list[str]
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    image_size: list[int] = Field(default_factory=list)


class VideoRequest(JobMessage):
    """A video job's first message: the video is the blob, analysed at `fps` frames a second."""

    blob_key: str
    submitted_at: float
    fps: float


class VideoSegmentRequest(VideoRequest):
    """One detector task's share of a video job: the sampled frames from `start_s` to `end_s`
    (none: to the end), segment `index` of `count` (roadsigns.detector.video.plan_segments)."""

    index: int = Field(ge=0)
    count: int = Field(ge=1)
    start_s: float
    end_s: float | None

    @property
    def delivery_id(self) -> str:
        return f"{self.job_id}.{self.index}"


class TrackedSign(BaseModel):
    """One physical sign followed over a video's sampled frames (roadsigns.detector.video).

    `detection` is the sign as the detector saw it over the whole track: the class voted over
    its frames (weighted by confidence), its mean scores, and its best frame's box and crop.
    `sharpest_crops_png_b64` are the few sharpest crops, the only ones the OCR stage reads."""

    track_id: int
    detection: Detection
    first_seen_s: float
    last_seen_s: float
    best_frame_s: float
    frames: int  # sampled frames it was detected in
    sharpest_crops_png_b64: list[str]


class VideoDetectResult(JobMessage):
    """A video's tracks, as the detector leaves them for the reader."""

    submitted_at: float = 0.0
    frames_analysed: int
    duration_s: float
    fps: float  # frames analysed per second of video
    tracks: list[TrackedSign]
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    image_size: list[int]
    min_confidence: float = 0.0


class VideoTrack(BaseModel):
    """One physical sign in a video's result: named and read over its track (roadsigns.ocr.video)."""

    track_id: int
    class_id: int | None
    class_name: str
    category: str
    text: str
    confidence: float
    first_seen_s: float
    last_seen_s: float
    frames: int
    bbox: list[float]  # in its best (most confident) frame
    best_frame_s: float
    crop_url: str | None = None  # the best frame's crop, where stored
    location: Location | None = None  # where the video was at the best frame, where known


class VideoResult(JobMessage):
    """A video's result, as the reader leaves it (what the tracker's `finish_video` writes)."""

    submitted_at: float = 0.0
    kind: Literal["video"] = "video"
    frames_analysed: int
    duration_s: float
    tracks: list[VideoTrack]
    crops_png_b64: list[str]  # each track's best crop, in the order of `tracks`
    timings_ms: dict[str, float]
    model_versions: dict[str, str]
    image_size: list[int]


class Location(BaseModel):
    """Where the photo was taken, from its EXIF GPS (roadsigns.shared.exifgps): degrees WGS84;
    metres above sea level and degrees clockwise from north where the photo says."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    altitude_m: float | None = None
    heading_deg: float | None = None


class SignOut(SignResult):
    crop_url: str | None = None
    location: Location | None = None  # the photo's: a photo has one position for all its signs


class CallbackOut(BaseModel):
    """How the job's completion webhook went: "delivered: HTTP 200", "retrying: …",
    "failed after 6 attempts: …" or "refused: …" (an address callbacks may not reach)."""

    status: str | None = None  # None until the job has finished and a delivery was tried
    attempts: int = 0


class JobOut(BaseModel):
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
    signs: list[SignOut] | None = None
    timings_ms: dict[str, float] | None = None
    model_versions: dict[str, str] | None = None
    callback: CallbackOut | None = None  # only for a job submitted with a callback_url
    location: Location | None = None  # only for a photo with EXIF GPS
    links: dict[str, str] = Field(default_factory=dict)
    kind: Literal["photo", "video"] = "photo"
    # A video job: frames analysed so far and in all (estimated from the container) while it runs;
    # once done, its frames analysed, duration and tracks (one per physical sign).
    progress: VideoProgress | None = None
    frames_analysed: int | None = None
    duration_s: float | None = None
    tracks: list[VideoTrack] | None = None


class VideoProgress(BaseModel):
    frames_done: int
    frames_total: int


class JobPage(BaseModel):
    items: list[JobOut]
    total: int
    limit: int
    offset: int


# GET /inventory (roadsigns.shared.inventory builds it): GeoJSON, RFC 7946.


class InventoryPoint(BaseModel):
    type: Literal["Point"] = "Point"
    coordinates: list[float] = Field(min_length=2, max_length=2, description="[lon, lat], degrees WGS84")


class InventorySign(BaseModel):
    class_id: int | None
    class_name: str
    text: str
    sightings: int = Field(description="detections merged into this sign")
    first_seen: datetime = Field(description="when its photos were taken (their GPS clock), else uploaded")
    last_seen: datetime
    job_ids: list[str] = Field(description="the jobs that saw it, oldest first")


class InventoryFeature(BaseModel):
    type: Literal["Feature"] = "Feature"
    geometry: InventoryPoint
    properties: InventorySign


class Inventory(BaseModel):
    """One feature per physical sign: sightings of one class and text close together, merged."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[InventoryFeature]
