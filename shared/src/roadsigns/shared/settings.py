"""Typed settings, read once per process from `ROADSIGNS_*` environment variables."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a roadsigns process can be told. Each field maps to `ROADSIGNS_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="ROADSIGNS_", env_file=None, extra="ignore")

    environment: Literal["development", "test", "staging", "production"] = "development"
    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/roadsigns"
    broker_url: str = "redis://127.0.0.1:6379/0"
    blob_dir: Path = Path("/tmp/roadsigns-blobs")

    # Upload limits: checked by the gateway before a job exists.
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 16
    # Gateway: decoded pixels that concurrent uploads may hold at once, per process (a 40 MP image
    # reserves about 320 MB: Pillow's 4 bytes a pixel, and a copy to normalise it).
    decode_budget_bytes: int = Field(384 * 1024 * 1024, gt=0)

    # Celery: a visibility timeout well above the longest task, so Redis does not
    # hand a running task to a second worker.
    visibility_timeout_s: int = 3600
    task_time_limit_s: int = 300

    # Reconciler: a job that made no progress for this long is re-enqueued, up to max_attempts.
    stale_after_s: int = 180
    max_attempts: int = 3
    reconcile_every_s: float = 30.0
    # Stage progress (roadsigns.shared.pipeline): the stage tasks leave their started marks in Redis;
    # beat has the tracker write them to Postgres this often, all in one transaction.
    progress_every_s: float = Field(1.0, gt=0)
    # Poison jobs (roadsigns.shared.deliveries): a job whose detect or OCR task killed its worker
    # process this many times is failed on the next delivery, and that message dropped.
    max_deliveries: int = Field(3, ge=1)
    # Retention (roadsigns.tracker.retention, run by beat): finished jobs older than this many
    # days are deleted with their photo and crops, and so are blobs that no job names. None: kept.
    retention_days: float | None = Field(None, gt=0)
    retention_every_s: float = 3600.0

    # Detector
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # A name roadsigns.detector.backends registers (torch, onnx, openvino), or auto: torch on a
    # CUDA device, else openvino.
    backend: str = "auto"
    detector_weights: Path | None = None  # default: the shipped file
    classifier_weights: Path | None = None
    # Longest side a photo runs at: larger ones are shrunk, smaller ones never enlarged. 2048, not a
    # dashcam frame's 1376: a larger camera's small signs would shrink with the photo (README "Photos
    # of every size", the `large` set).
    detector_imgsz: int = 2048
    detector_min_side: int = 320  # ... except thumbnails, enlarged to this long side
    detector_coarse_side: int = 384  # a second pass at this long side finds signs too large for the first (0: off)
    # A small photo's extra pass for signs under 24 px: enlarged twice, up to this long side (0: off)
    detector_small_side: int = 1376
    detector_conf: float = 0.05  # the localiser proposes boxes down to this score
    min_confidence: float = 0.25  # a sign is reported when localiser score x class probability reaches this
    crop_margin: float = 0.2  # crops are this much larger than the box on each side, in total
    # The classifier also sees each unsure crop (top class under 0.8) shrunk to this scale about its
    # centre, and averages the two views' probabilities (0: the crop alone). README "A second view
    # of unsure crops".
    classifier_zoom_view: float = Field(0.9, ge=0.0, le=1.0)
    # A proposal the classifier's sign gate says is a sign with less than this probability is
    # dropped: wheels, lights, foliage, lettering (0: keep all). README "Is it a sign at all".
    min_sign_probability: float = Field(0.05, ge=0.0, le=1.0)
    model_registry_alias: str | None = None  # e.g. "champion": load models:/NAME@ALIAS from MLflow
    # Detector workers ask the registry this often which versions the alias names, and load new ones
    # in each child without a restart (roadsigns.detector.serving); 0: load once, at start.
    model_poll_s: float = Field(30.0, ge=0)
    # Photos per model call across queued jobs (roadsigns.detector.collector): above 1, a detector
    # worker runs this many detect tasks in threads and one thread detects their photos together,
    # waiting at most detector_batch_wait_ms for more after the first. 1: one photo a task, in
    # prefork children (the CPU's setting: a core gains nothing from a batch). A GPU's: 8.
    detector_batch: int = Field(1, ge=1, le=256)
    detector_batch_wait_ms: float = Field(10.0, ge=0)

    # OCR
    ocr_languages: str = "eng+deu+fra"
    ocr_min_confidence: float = 40.0
    ocr_learned_readers: bool = True  # false: Tesseract reads speed limits and STOP words too (slower, less accurate)
    # A folder holding digits.onnx and words.onnx to read with instead of the shipped readers.
    ocr_weights_dir: Path | None = None

    # Signs outside the 43 classes (roadsigns.shared.openset): below this class probability the
    # classifier's class is not reported; a confident reading of a speed limit's number names
    # the sign, else it is an "other sign". An even chance: below it, the other 42 classes
    # together outweigh the top one.
    open_set_min_probability: float = Field(0.5, ge=0.0, le=1.0)
    # The review queue (GET /reviews, roadsigns.shared.reviews): a sign below this confidence is
    # queued for a person to check, as are open-set signs and readings that disagree with the class.
    review_below: float = Field(0.5, ge=0.0, le=1.0)

    # Tracker
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "roadsigns-jobs"
    # MLflow gets aggregates, not a run per job (roadsigns.tracker.aggregates): beat has the tracker log
    # one run per model version for each window of this many seconds, aligned to the clock.
    mlflow_window_s: int = Field(300, gt=0)

    # Completion webhooks (their own queue and pool): body signed with HMAC-SHA256 under this
    # secret, retried with backoff. Each attempt has one total deadline, reads at most
    # webhook_max_response_bytes of the answer, and reaches public addresses only unless
    # callback_allow_private (development; roadsigns.shared.callbacks).
    webhook_secret: str | None = None
    # Per tenant: comma-separated `tenant:secret` entries; a tenant not named here gets webhook_secret.
    webhook_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_max_attempts: int = 6
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_max_response_bytes: int = Field(64 * 1024, gt=0)
    callback_allow_private: bool = False

    # Gateway
    # Comma-separated `tenant:key` entries (the key may be `sha256:<hex>`); a JSON list of such
    # entries is read too. Set: every /jobs and /predict request needs a key, and sees only its
    # tenant's jobs. Empty (development): one tenant, "default", and no key asked for.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per-tenant limit on POST /jobs and /predict, in the `limits` notation ("120/minute",
    # "10/second"); empty: no limit. Past it: 429 with Retry-After.
    rate_limit: str = ""
    predict_timeout_s: float = 60.0
    # Signs the image and crop links in a job's JSON (roadsigns.gateway.links), which carry no
    # API key. Required in staging and production; unset in development, a random one per process.
    link_secret: str | None = None
    link_ttl_s: int = Field(900, gt=0)
    # A request's head (line and headers) must arrive whole within this many seconds of the
    # connection opening or the previous response (roadsigns.gateway.protocol).
    header_timeout_s: float = Field(10.0, gt=0)
    cors_origins: list[str] = Field(default_factory=list)
    # The web page's inventory map: a tile URL template with {z}, {x} and {y} (XYZ, Web Mercator,
    # 256 px tiles), e.g. "https://tile.example.org/{z}/{x}/{y}.png", drawn under the points; its
    # origin is added to the page's img-src. Unset: the map is a plain plot, and makes no request.
    map_tile_url: str | None = None
    map_tile_attribution: str = ""  # shown under the map, e.g. "© OpenStreetMap contributors"
    # Serve /metrics on this port (workers, and the gateway, whose API port then has no /metrics:
    # it is not public). Unset: workers serve none, the gateway serves it on its API port.
    metrics_port: int | None = None
    # GET /inventory and `roadsigns inventory` (roadsigns.shared.inventory): sightings of one
    # class and text within this many metres of a sign's first sighting are that sign.
    inventory_merge_m: float = Field(15.0, ge=0, le=1000)
    # Video (roadsigns.detector.video): frames analysed per second of video; a track seen in
    # fewer sampled frames is flicker, not a sign; the reader reads only a track's sharpest crops.
    video_fps: float = Field(5.0, gt=0, le=60)
    video_min_track_frames: int = Field(2, ge=1)
    video_ocr_crops: int = Field(3, ge=1, le=20)
    # A video longer than this is split into segments of about this many seconds, which the detector
    # pool's workers detect at once; the last to finish tracks them all (roadsigns.detector.worker). 0: one task.
    video_segment_s: float = Field(10.0, ge=0)
    # A video's frames run the detector's small-sign pass too (detector_small_side): off, because it
    # halves the rate on small frames, and a sign too small in one frame is seen larger a few later.
    video_small_signs: bool = False
    # ... and a video frame's longest side is at most this (detector_imgsz is a photo's): a 1920x1080
    # frame at its own size costs twice as much, and its small signs are seen larger a few frames later.
    video_imgsz: int = Field(1376, ge=32)
    # POST /jobs refuses (4xx) a video larger, longer, or with more frames to analyse (duration x fps) than these.
    video_max_upload_bytes: int = Field(200 * 1024 * 1024, gt=0)
    video_max_duration_s: float = Field(600.0, gt=0)
    video_max_frames: int = Field(600, gt=0)  # 2 min at 5 fps: about 3 min of CPU, within the task time limit
    # POST /jobs refuses (413) a video's GPX track (the `gpx` field, roadsigns.shared.gpxtrack) larger than this.
    gpx_max_upload_bytes: int = Field(5 * 1024 * 1024, gt=0)

    @field_validator("map_tile_url")
    @classmethod
    def _check_tile_url(cls, value: str | None) -> str | None:
        """An http(s) URL with a literal host (it becomes a CSP source) and {z}, {x} and {y} in its path."""
        if not value or not value.strip():
            return None
        value = value.strip()
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c in parts.netloc for c in "{}*;,@ '\""):
            raise ValueError(
                "map_tile_url must be an http(s) URL with a literal host: https://tile.example.org/{z}/{x}/{y}.png"
            )
        missing = [p for p in ("{z}", "{x}", "{y}") if p not in value]
        if missing:
            raise ValueError(f"map_tile_url lacks {', '.join(missing)}")
        return value

    @field_validator("api_keys", "webhook_secrets", mode="before")
    @classmethod
    def _split_api_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list):
            return [str(v).strip() for v in value if str(v).strip()]
        return value

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        known = _detector_backends()
        if known is not None and value not in known:
            raise ValueError(f"no detector backend {value!r}: ROADSIGNS_BACKEND is one of {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.max_upload_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError("upload limits must be positive")
        if "*" in self.cors_origins and self.environment in ("staging", "production"):
            raise ValueError("wildcard CORS is not allowed outside development")
        return self


def _detector_backends() -> tuple[str, ...] | None:
    """The names the detector's backend registry knows; None in a process without the detector.

    The one look from shared/ into a service, and a light one: the registry module imports no
    runtime. The gateway and the tracker have no detector and never read the setting.
    """
    try:
        from roadsigns.detector.backends import names
    except ModuleNotFoundError as e:
        if e.name in ("roadsigns.detector", "roadsigns.detector.backends"):
            return None
        raise
    return names()


@lru_cache
def get_settings() -> Settings:
    return Settings()
