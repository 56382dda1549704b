"""The OpenAPI document as client generators need it.

FastAPI (pydantic 2, OpenAPI 3.1) describes an upload as `type: string, contentMediaType:
application/octet-stream`; openapi-python-client and openapi-generator read that as a text
field, and their clients then send the photo as text. `format: binary` is what they
understand, so the document says that. Every error answer is documented with the one body
the gateway sends for errors, `{"detail": "<message>"}`, and operation ids are the handlers'
names (`create_job`, not `create_job_jobs_post`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

ERROR_REF = {"$ref": "#/components/schemas/Error"}
BINARY = {"type": "string", "format": "binary"}


class Error(BaseModel):
    """Every 4xx and 5xx answer of the API: what went wrong, in words meant for the caller."""

    detail: str


class Readiness(BaseModel):
    """`GET /ready`: "ready" (200) or "not ready" (503), and what each dependency answered."""

    status: str
    checks: dict[str, str]


def operation_id(route: APIRoute) -> str:
    return route.name


# Answers any operation that takes the caller's tenant or an upload may give.
_COMMON = {
    "401": "no API key sent, while keys are configured",
    "403": "the API key is not valid",
    "422": "a parameter or form field is missing or invalid",
    "429": "this tenant's rate limit is reached; retry after Retry-After seconds",
    "503": "the database or the queue is unavailable; retry after Retry-After seconds",
}
_UPLOADS = ("create_job", "predict")
_UPLOAD_ERRORS = {
    "400": "empty, truncated or corrupt image",
    "413": "file or image too large",
    "415": "not an image",
}
_BINARY_RESPONSES = {
    "get_image": ("image/jpeg", "image/png"),
    "get_crop": ("image/png",),
    "get_track_crop": ("image/png",),
}


def _binary_uploads(node: Any) -> None:
    """Rewrite every `contentMediaType: application/octet-stream` string into `format: binary`."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("contentMediaType") == "application/octet-stream":
            node.pop("contentMediaType")
            node["format"] = "binary"
        for value in node.values():
            _binary_uploads(value)
    elif isinstance(node, list):
        for value in node:
            _binary_uploads(value)


def _document_errors(schema: dict[str, Any]) -> None:
    for path in schema.get("paths", {}).values():
        for op in path.values():
            responses = op.setdefault("responses", {})
            if op.get("operationId") not in ("health", "ready"):
                for status, description in _COMMON.items():
                    if status != "429" or op["operationId"] in _UPLOADS:
                        responses.setdefault(status, {"description": description})
            if op.get("operationId") in _UPLOADS:
                for status, description in _UPLOAD_ERRORS.items():
                    responses.setdefault(status, {"description": description})
            if op.get("operationId") in _BINARY_RESPONSES:
                types = _BINARY_RESPONSES[op["operationId"]]
                responses["200"]["content"] = {t: {"schema": dict(BINARY)} for t in types}
                responses.setdefault("404", {"description": "no such job, or no such sign"})
                responses.setdefault("410", {"description": "no longer stored (retention)"})
                responses["403"] = {"description": "the API key, or the signed link (expires, sig), is not valid"}
            if op.get("operationId") == "ready":
                ready = {"application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}}
                responses["200"]["content"] = ready
                responses["503"] = {"description": "Postgres or the broker does not answer", "content": ready}
                continue
            if op.get("operationId") == "get_job":
                responses.setdefault("404", {"description": "no such job"})
            if op.get("operationId") == "predict":
                job = {"$ref": "#/components/schemas/JobOut"}
                responses["202"]["content"] = {"application/json": {"schema": job}}
                # 422 is also the answer for a job that failed: its body is then the job.
                responses["422"] = {
                    "description": "invalid request (Error), or the job failed (the job, with its error)",
                    "content": {"application/json": {"schema": {"anyOf": [dict(ERROR_REF), job]}}},
                }
            for status, response in responses.items():
                if status[0] in "45" and not (op.get("operationId") == "predict" and status == "422"):
                    # Our handlers answer {"detail": "<message>"}, FastAPI's own 422 shape included.
                    response["content"] = {"application/json": {"schema": dict(ERROR_REF)}}
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    components["Error"] = Error.model_json_schema()
    components["Readiness"] = Readiness.model_json_schema()


def install(app: FastAPI) -> None:
    """Replace `app.openapi` with one that builds the document above once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            _binary_uploads(schema)
            _document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
