"""`create_app()`: the FastAPI gateway. Run with `uvicorn --factory roadsigns.gateway.app:create_app`."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from importlib import resources
from urllib.parse import urlsplit

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import REGISTRY, CollectorRegistry, make_asgi_app, multiprocess, start_http_server
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from roadsigns.gateway import openapi
from roadsigns.gateway.deps import Services
from roadsigns.gateway.keys import KeyConfigError, KeyRing
from roadsigns.gateway.links import LinkSigner
from roadsigns.gateway.metrics import MetricsMiddleware
from roadsigns.gateway.middleware import BodyLimitMiddleware, SecurityHeadersMiddleware
from roadsigns.gateway.queue_metrics import register_queue_metrics
from roadsigns.gateway.ratelimit import TenantRateLimit
from roadsigns.gateway.routes import health, inventory, jobs, predict, reviews
from roadsigns.gateway.uploads import UploadRejected
from roadsigns.shared.blobstore import BlobStore
from roadsigns.shared.db.session import get_engine
from roadsigns.shared.logs import setup as setup_logging
from roadsigns.shared.settings import Settings, get_settings
from roadsigns.shared.tasks import make_celery

THREADS = 16  # per uvicorn worker
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


def tile_origin(url: str) -> str:
    """The scheme and host of a map tile URL template: the source the page's CSP adds to img-src."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def metrics_registry() -> CollectorRegistry:
    """What /metrics serves. With several uvicorn workers (PROMETHEUS_MULTIPROC_DIR set), every
    worker's samples merged, so a scrape does not see only the worker that happened to answer."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def serve_metrics_port(port: int, registry: CollectorRegistry) -> Callable[[], None]:
    """/metrics on a port of its own, which no ingress or published port reaches. With several
    uvicorn workers the first to bind serves them all (the registry merges every worker's samples)."""
    try:
        server, _ = start_http_server(port, registry=registry)
    except OSError:  # bound by another worker of this gateway
        return lambda: None
    return server.shutdown


def key_ring(settings: Settings) -> KeyRing:
    """The API keys, or a clear reason not to start: a malformed entry, or none outside development."""
    try:
        ring = KeyRing.parse(settings.api_keys)
    except KeyConfigError as exc:
        raise SystemExit(f"roadsigns gateway: {exc}") from None
    if not ring and settings.environment in ("staging", "production"):
        raise SystemExit(
            f"roadsigns gateway: ROADSIGNS_ENVIRONMENT={settings.environment} needs ROADSIGNS_API_KEYS "
            "(comma-separated tenant:key entries); refusing to start with the API open to anyone"
        )
    return ring


def link_signer(settings: Settings) -> LinkSigner:
    """Signs image and crop links; outside development the secret must be set, so that every
    replica and worker process accepts the links the others made."""
    if settings.link_secret:
        return LinkSigner(settings.link_secret.encode(), settings.link_ttl_s)
    if settings.environment in ("staging", "production"):
        raise SystemExit(
            f"roadsigns gateway: ROADSIGNS_ENVIRONMENT={settings.environment} needs ROADSIGNS_LINK_SECRET "
            "(signs the image and crop links); refusing to start"
        )
    return LinkSigner(secrets.token_bytes(32), settings.link_ttl_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    log = setup_logging("gateway")
    keys = key_ring(settings)
    links = link_signer(settings)
    registry = metrics_registry()
    register_queue_metrics(settings.broker_url, registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Blocking work (Postgres, the blob write, the image check) runs in a thread pool; one
        # pooled connection per thread, so no request pays for opening a connection.
        to_thread.current_default_thread_limiter().total_tokens = THREADS
        engine = get_engine(settings.database_url, "roadsigns-gateway", pool_size=THREADS)
        inserts = get_engine(settings.database_url, "roadsigns-gateway", pool_size=THREADS, autocommit=True)
        stop_metrics = serve_metrics_port(settings.metrics_port, registry) if settings.metrics_port else None
        app.state.services = Services(
            settings,
            engine,
            inserts,
            make_celery("roadsigns-gateway", settings),
            BlobStore(settings.blob_dir),
            keys,
            TenantRateLimit(settings.rate_limit, settings.broker_url),
            links,
        )
        yield
        engine.dispose()
        inserts.dispose()
        if stop_metrics:
            stop_metrics()

    app = FastAPI(
        title="roadsigns",
        version="0.1.0",
        lifespan=lifespan,
        description="Finds traffic signs in photos, names their class and reads their text.",
        generate_unique_id_function=openapi.operation_id,  # create_job, get_job, list_jobs, ...
    )
    openapi.install(app)
    app.add_middleware(MetricsMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            allow_credentials="*" not in settings.cors_origins,
        )

    app.add_middleware(
        BodyLimitMiddleware,
        max_upload_bytes=settings.max_upload_bytes,
        max_video_bytes=settings.video_max_upload_bytes + settings.gpx_max_upload_bytes,  # a video and its GPX track
    )
    app.add_middleware(
        SecurityHeadersMiddleware, img_origins=[tile_origin(settings.map_tile_url)] if settings.map_tile_url else []
    )

    @app.exception_handler(UploadRejected)
    async def _rejected(_: Request, exc: UploadRejected) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=getattr(exc, "headers", None))

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
    # Every /jobs, /predict, /inventory and /reviews route takes the caller's tenant (roadsigns.gateway.auth).
    app.include_router(jobs.router)
    app.include_router(predict.router)
    app.include_router(inventory.router)
    app.include_router(reviews.router)
    if not settings.metrics_port:  # development: on the API's own port
        app.mount("/metrics", make_asgi_app(registry))
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")))

    # What the page needs to know of the server's settings (static/inventory.js): public, no key.
    page_config = {"map_tile_url": settings.map_tile_url, "map_tile_attribution": settings.map_tile_attribution}

    @app.get("/page-config", include_in_schema=False)
    def get_page_config() -> JSONResponse:
        return JSONResponse(page_config)

    return app
