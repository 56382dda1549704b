"""FastAPI dependencies, as `Annotated` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from roadsigns.gateway.keys import KeyRing
from roadsigns.gateway.links import LinkSigner
from roadsigns.gateway.ratelimit import TenantRateLimit
from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.db.session import session_scope
from roadsigns.shared.settings import Settings


@dataclass
class Services:
    """Built once in the app's lifespan, disposed on shutdown."""

    settings: Settings
    engine: Engine  # sessions: reads, and writes of more than one statement
    inserts: Engine  # autocommit, for the job's single INSERT (roadsigns.gateway.repository.create)
    celery: Celery
    blobs: BlobStore
    keys: KeyRing
    rate_limit: TenantRateLimit
    links: LinkSigner


async def get_services(request: Request) -> Services:
    """async, as every dependency that does no blocking I/O: FastAPI runs a plain `def` one in its
    thread pool, a hop (and a fight for the GIL) per request for an attribute read."""
    services: Services = request.app.state.services
    return services


def get_session(services: Annotated[Services, Depends(get_services)]) -> Iterator[Session]:
    with session_scope(services.engine) as session:
        yield session


ServicesDep = Annotated[Services, Depends(get_services)]
SessionDep = Annotated[Session, Depends(get_session)]
