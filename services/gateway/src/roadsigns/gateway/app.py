"""`create_app()`: the FastAPI gateway. Run with `uvicorn --factory roadsigns.gateway.app:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import make_asgi_app
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from roadsigns.gateway.auth import ApiKey
from roadsigns.gateway.deps import Services
from roadsigns.gateway.metrics import MetricsMiddleware
from roadsigns.gateway.queue_metrics import register_queue_metrics
from roadsigns.gateway.routes import health, jobs, predict
from roadsigns.gateway.uploads import UploadRejected
from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.db.session import get_engine
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.settings import Settings, get_settings
from roadsigns.shared.tasks import make_celery

STATIC = resources.files("roadsigns.gateway").joinpath("static")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(loc) or "request"
        if err.get("type") == "missing" and field == "file":
            parts.append("missing form field 'file': send the photo as multipart/form-data in a field named 'file'")
        elif field == "file":
            parts.append("the form field 'file' must be an uploaded file, not text")
        else:
            parts.append(f"{field}: {err.get('msg')}")
    return "; ".join(parts)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    log = setup_logging("gateway")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = get_engine(settings.database_url, "roadsigns-gateway")
        app.state.services = Services(
            settings, engine, make_celery("roadsigns-gateway", settings), BlobStore(settings.blob_dir)
        )
        yield
        engine.dispose()

    app = FastAPI(
        title="roadsigns",
        version="0.1.0",
        lifespan=lifespan,
        description="Finds traffic signs in photos, names their class and reads their text.",
    )
    app.add_middleware(MetricsMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            allow_credentials="*" not in settings.cors_origins,
        )

    @app.middleware("http")
    async def refuse_giant_bodies(request: Request, call_next):  # type: ignore[no-untyped-def]
        """Refuse an oversized body from its Content-Length, before reading any of it."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_upload_bytes + 1024 * 1024:
            return JSONResponse(
                {
                    "detail": f"the request body is {length} bytes; uploads are limited to "
                    f"{settings.max_upload_bytes} bytes"
                },
                status_code=413,
            )
        return await call_next(request)

    @app.exception_handler(UploadRejected)
    async def _rejected(_: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def _db_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return JSONResponse(
            {"detail": "the database is unavailable; try again shortly"}, status_code=503, headers={"Retry-After": "5"}
        )

    app.include_router(health.router)
    app.include_router(jobs.router, dependencies=ApiKey)
    app.include_router(predict.router, dependencies=ApiKey)
    register_queue_metrics(settings.broker_url)
    app.mount("/metrics", make_asgi_app())
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")))

    return app
