"""Verify a completion webhook in one call.

The gateway's webhook pool POSTs the finished job with `X-Roadsigns-Timestamp: <unix s>` and
`X-Roadsigns-Signature: sha256=<hex>`, the HMAC-SHA256 under the tenant's secret of
`<timestamp>.<body>` (roadsigns.tracker.webhooks).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

from roadsigns.sdk.errors import RoadsignsError
from roadsigns.sdk.models import Job

SIGNATURE = "X-Roadsigns-Signature"
TIMESTAMP = "X-Roadsigns-Timestamp"


class WebhookError(RoadsignsError):
    """The webhook is not authentic, or too old (a replay): answer it with 400 and drop it."""


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_webhook(
    body: bytes, headers: Mapping[str, str], secret: str, tolerance_s: float = 300, now: float | None = None
) -> Job:
    """The job the webhook carries, once its signature and timestamp are checked.

    `body` must be the raw request body, byte for byte; `headers` any mapping of the request's
    headers (case-insensitive lookup). Raises WebhookError for a missing or wrong signature, or a
    timestamp more than `tolerance_s` away from now."""
    signature, timestamp = _header(headers, SIGNATURE), _header(headers, TIMESTAMP)
    if not signature or not timestamp:
        raise WebhookError(f"missing {SIGNATURE} or {TIMESTAMP} header")
    try:
        sent = int(timestamp)
    except ValueError:
        raise WebhookError(f"{TIMESTAMP} is not a unix time: {timestamp!r}") from None
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        raise WebhookError(f"the webhook's timestamp is more than {tolerance_s:g} s away from now (a replay?)")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        raise WebhookError("the webhook's signature does not match: wrong secret, or a changed body")
    return Job.model_validate_json(body)
