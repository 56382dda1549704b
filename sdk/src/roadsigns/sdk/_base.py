"""What the sync and the async client share: settings, uploads, retry and poll timing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from roadsigns.sdk import __version__

RETRY_STATUSES = (429, 503)  # both mean "later": a rate limit, or a dependency briefly down
Upload = str | Path | bytes


@dataclass(frozen=True)
class Retry:
    """Up to `attempts` tries on 429/503, waiting what Retry-After says (capped), else backing off."""

    attempts: int = 5
    backoff_s: float = 0.5
    max_wait_s: float = 30.0

    def delay(self, response: httpx.Response, attempt: int) -> float:
        header = response.headers.get("Retry-After")
        wait: float | None = None
        if header:
            try:
                wait = float(header)
            except ValueError:
                try:
                    wait = parsedate_to_datetime(header).timestamp() - time.time()
                except (TypeError, ValueError):
                    wait = None
        if wait is None:
            wait = self.backoff_s * 2**attempt
        return min(max(wait, 0.0), self.max_wait_s)


def client_kwargs(base_url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    headers = {"User-Agent": f"roadsigns-sdk/{__version__}"}
    if api_key:
        headers["X-API-Key"] = api_key
    return {"base_url": base_url.rstrip("/"), "headers": headers, "timeout": timeout}


def _read(upload: Upload, filename: str | None, default: str) -> tuple[bytes, str]:
    if isinstance(upload, bytes):
        return upload, filename or default
    path = Path(upload)
    return path.read_bytes(), filename or path.name


def upload_parts(
    upload: Upload,
    callback_url: str | None,
    idempotency_key: str | None,
    filename: str | None,
    gpx: Upload | None = None,
    gpx_offset_s: float | None = None,
) -> dict[str, Any]:
    """The multipart body and headers of `POST /jobs`. Without an idempotency key one is made,
    so the SDK's own retries after a 503 can never create the job twice."""
    data, name = _read(upload, filename, "upload")
    files = {"file": (name, data, "application/octet-stream")}
    if gpx is not None:
        track, track_name = _read(gpx, None, "track.gpx")
        files["gpx"] = (track_name, track, "application/gpx+xml")
    form = {"callback_url": callback_url} if callback_url else {}
    if gpx_offset_s is not None:
        form["gpx_offset_s"] = repr(float(gpx_offset_s))
    return {
        "files": files,
        "data": form or None,
        "headers": {"Idempotency-Key": idempotency_key or uuid.uuid4().hex},
    }


def poll_delays(first: float = 0.2, factor: float = 1.5, cap: float = 2.0) -> Iterator[float]:
    """0.2, 0.3, 0.45, ... capped at 2 s: quick answers for quick jobs, few requests for slow ones."""
    delay = first
    while True:
        yield delay
        delay = min(delay * factor, cap)
