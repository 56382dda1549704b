"""API keys: off when `ROADSIGNS_API_KEYS` is empty (development), required otherwise."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query

from roadsigns.gateway.deps import ServicesDep


def require_api_key(
    services: ServicesDep,
    x_api_key: Annotated[str | None, Header(description="one of ROADSIGNS_API_KEYS, when keys are configured")] = None,
    api_key: Annotated[str | None, Query(description="the same key, for <img src> links")] = None,
) -> None:
    keys = services.settings.api_keys
    if not keys:
        return
    given = x_api_key or api_key
    if not given:
        raise HTTPException(
            401, "an API key is required: send it in the X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"}
        )
    if not any(hmac.compare_digest(given.encode(), k.encode()) for k in keys):
        raise HTTPException(403, "this API key is not valid")


ApiKey = [Depends(require_api_key)]
