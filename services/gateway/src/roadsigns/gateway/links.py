"""Image and crop links that carry no API key: short-lived, signed with ROADSIGNS_LINK_SECRET.

An `<img>` cannot send the X-API-Key header, and a key in a URL ends up in access logs, proxies
and browser history. So the job's JSON links its photo and crops as
`/jobs/{id}/image?expires=<unix time>&sig=<hex>`, where `sig` is an HMAC-SHA256 over the job's
tenant, the path and the expiry. Anyone holding the link may fetch that one picture until it
expires, and nothing else: another path, another tenant's job or a later expiry breaks the MAC.
Expiries are rounded up to a step, so a page that re-reads a job gets the same links (and the
browser's cached pictures) for a while.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Callable
from urllib.parse import urlencode

STEP_S = 300


class LinkSigner:
    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, tenant: str, path: str, expires: int) -> str:
        message = f"{tenant}\n{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, tenant: str, path: str, now: float | None = None) -> str:
        """The path with `expires` and `sig`; valid for ttl_s to ttl_s + STEP_S seconds (at most 2 × ttl_s)."""
        step = min(STEP_S, self.ttl_s)
        expires = math.ceil(((now or time.time()) + self.ttl_s) / step) * step
        return f"{path}?{urlencode({'expires': expires, 'sig': self._mac(tenant, path, expires)})}"

    def for_tenant(self, tenant: str) -> Callable[[str], str]:
        return lambda path: self.sign(tenant, path)

    def valid(self, tenant: str, path: str, expires: int, sig: str) -> bool:
        if expires < time.time():
            return False
        return hmac.compare_digest(self._mac(tenant, path, expires), sig)
