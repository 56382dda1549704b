"""Per-tenant rate limit on uploads (`ROADSIGNS_RATE_LIMIT`, e.g. "120/minute"; empty: off).

The `limits` library's moving window over Redis (the broker every gateway replica already
reaches), so the limit holds across replicas and uvicorn workers. When Redis does not answer,
uploads are let through (and would fail at enqueue anyway): the limit protects capacity, it
is not an access control.
"""

from __future__ import annotations

import logging
import math
import time

import limits
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from roadsigns.gateway.uploads import UploadRejected

log = logging.getLogger(__name__)


class RateLimited(UploadRejected):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, message)
        self.headers = {"Retry-After": str(retry_after)}


class TenantRateLimit:
    def __init__(self, spec: str, redis_url: str) -> None:
        self.spec = spec
        self.item = limits.parse(spec) if spec else None
        self.limiter = (
            MovingWindowRateLimiter(
                RedisStorage(redis_url, key_prefix="roadsigns:ratelimit", socket_timeout=2, socket_connect_timeout=2)
            )
            if self.item
            else None
        )

    def check(self, tenant: str) -> None:
        """Count one upload for the tenant; raise RateLimited (429, Retry-After) past the limit."""
        if self.item is None or self.limiter is None:
            return
        try:
            if self.limiter.hit(self.item, "jobs", tenant):
                return
            stats = self.limiter.get_window_stats(self.item, "jobs", tenant)
        except Exception as exc:  # noqa: BLE001 - Redis unreachable: fail open, say so
            log.warning("rate limit not checked (%s): upload let through", exc)
            return
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(
            f"too many uploads: this API key's tenant may send {self.spec}; try again in {retry_after} s", retry_after
        )
