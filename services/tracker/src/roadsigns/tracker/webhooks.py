"""Completion webhooks: a signed POST of the finished job to the `callback_url` it was given.

Receivers verify `X-Roadsigns-Signature: sha256=<hex>`, the HMAC-SHA256 under the shared
secret of `<X-Roadsigns-Timestamp>.<body>`, and may refuse old timestamps (replays).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time

from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from roadsigns.shared.db.models import Job
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.db.views import job_to_out
from roadsigns.tracker import safe_http


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def secret_for(tenant: str, per_tenant: list[str], default: str | None) -> str | None:
    """The tenant's own signing secret (`ROADSIGNS_WEBHOOK_SECRETS`, tenant:secret entries), else the shared one."""
    for entry in per_tenant:
        name, sep, secret = entry.partition(":")
        if sep and name == tenant and secret:
            return secret
    return default


def payload(engine: Engine, job_id: str) -> tuple[str, bytes, str] | None:
    """The callback URL, the JSON body (the job as `GET /jobs/{id}` shows it) and the job's
    tenant, if it has a callback."""
    with session_scope(engine) as s:
        job = s.execute(select(Job).where(Job.id == job_id).options(selectinload(Job.signs))).scalar_one_or_none()
        if job is None or not job.callback_url:
            return None
        body = json.dumps(job_to_out(job).model_dump(mode="json"), separators=(",", ":")).encode()
        return job.callback_url, body, job.tenant


def deliver(
    url: str, body: bytes, secret: str | None, deadline_s: float, max_response_bytes: int, allow_private: bool
) -> int:
    """POST once through the guarded transport (safe_http); return the HTTP status.

    Raises CallbackRefused for an address the policy refuses, httpcore errors otherwise."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Roadsigns-Timestamp": timestamp,
        "User-Agent": "roadsigns-webhook/1",
    }
    if secret:
        headers["X-Roadsigns-Signature"] = sign(secret, timestamp, body)
    return safe_http.post(
        url,
        body,
        headers,
        deadline_s=deadline_s,
        max_response_bytes=max_response_bytes,
        allow_private=allow_private,
    )


def record(engine: Engine, job_id: str, status: str, attempts: int) -> None:
    with session_scope(engine) as s:
        job = s.get(Job, job_id)
        if job is not None:
            job.callback_status = status[:255]
            job.callback_attempts = attempts
