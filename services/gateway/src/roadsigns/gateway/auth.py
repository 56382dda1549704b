"""The caller's tenant: from the X-API-Key header, checked against `ROADSIGNS_API_KEYS` (keys.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from roadsigns.gateway.deps import ServicesDep
from roadsigns.gateway.keys import DEFAULT_TENANT, key_id

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
    """The caller's tenant, from the X-API-Key header only: a key in a URL ends up in logs. Image
    and crop links need no key; the job's JSON gives them signed (roadsigns.gateway.links)."""
    if services.keys and "api_key" in request.query_params:
        raise HTTPException(
            401,
            "send the API key in the X-API-Key header: ?api_key= is taken nowhere "
            "(image and crop links in a job's JSON are signed and need no key)",
            headers={"WWW-Authenticate": "X-API-Key"},
        )
    return _tenant(services, x_api_key)


async def _tenant_dependency(request: Request, services: ServicesDep, x_api_key: KeyHeader = None) -> str:
    """require_tenant as a dependency: async, so that FastAPI runs it on the event loop, not in its
    thread pool (it does no I/O: a hop to a thread per request cost more than the check)."""
    return require_tenant(request, services, x_api_key)


Tenant = Annotated[str, Depends(_tenant_dependency)]


@dataclass(frozen=True)
class Caller:
    """Who is asking: the tenant, and the key's id ("anonymous" where no keys are configured)."""

    tenant: str
    key_id: str


async def require_caller(request: Request, services: ServicesDep, x_api_key: KeyHeader = None) -> Caller:
    tenant = require_tenant(request, services, x_api_key)
    return Caller(tenant, key_id(x_api_key) if services.keys and x_api_key else "anonymous")


CallerDep = Annotated[Caller, Depends(require_caller)]
