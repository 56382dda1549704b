"""The caller's tenant: from the X-API-Key header, checked against `ROADSIGNS_API_KEYS` (keys.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Query, Request

from roadsigns.gateway.deps import ServicesDep
from roadsigns.gateway.keys import DEFAULT_TENANT

KeyHeader = Annotated[str | None, Header(description="one of ROADSIGNS_API_KEYS, when keys are configured")]


def _tenant(services: ServicesDep, given: str | None) -> str:
    ring = services.keys
    if not ring:
        return DEFAULT_TENANT
    if not given:
        raise HTTPException(
            401, "an API key is required: send it in the X-API-Key header", headers={"WWW-Authenticate": "X-API-Key"}
        )
    tenant = ring.tenant_of(given)
    if tenant is None:
        raise HTTPException(403, "this API key is not valid")
    return tenant


def require_tenant(request: Request, services: ServicesDep, x_api_key: KeyHeader = None) -> str:
    """The caller's tenant, from the X-API-Key header only."""
    if services.keys and "api_key" in request.query_params:
        raise HTTPException(
            401,
            "send the API key in the X-API-Key header: ?api_key= is taken on image and crop links only",
            headers={"WWW-Authenticate": "X-API-Key"},
        )
    return _tenant(services, x_api_key)


def require_tenant_for_link(
    services: ServicesDep,
    x_api_key: KeyHeader = None,
    api_key: Annotated[str | None, Query(description="the same key, for <img src> links only")] = None,
) -> str:
    """As `require_tenant`, but an image or crop link may carry the key as `?api_key=` (an <img>
    cannot send headers). Nowhere else is a key in the URL taken: URLs end up in logs."""
    return _tenant(services, x_api_key or api_key)


Tenant = Annotated[str, Depends(require_tenant)]
LinkTenant = Annotated[str, Depends(require_tenant_for_link)]
