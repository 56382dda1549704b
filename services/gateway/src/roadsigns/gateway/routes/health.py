"""Liveness and readiness."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from roadsigns.gateway.deps import ServicesDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/ready")
def ready(services: ServicesDep) -> JSONResponse:
    """Postgres and the Redis broker both answer (each checked for real, with a short timeout)."""
    checks: dict[str, str] = {}
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"unreachable: {type(exc).__name__}"
    try:
        client = redis.Redis.from_url(services.settings.broker_url, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"unreachable: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503)
