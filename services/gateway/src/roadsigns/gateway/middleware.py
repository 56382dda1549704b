"""Plain ASGI middleware of the gateway (no BaseHTTPMiddleware: it costs on every request)."""

from __future__ import annotations

from collections.abc import Sequence

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        # Connection: close, so the server stops reading the rest of the body rather than drain it.
        super().__init__(
            413, f"the request body is larger than {limit} bytes; uploads are limited to that", {"Connection": "close"}
        )


_SNIFF_BYTES = 64 * 1024  # the `file` part's first bytes must show within this much of the body


def _uploaded_kind(head: bytes) -> str | None:
    """What the start of a multipart body uploads, "video" or "photo", once its `file` part's first
    bytes are in; None while they are not. Anything else is a "photo": a body that is not multipart,
    or whose `file` part has not begun within `_SNIFF_BYTES`."""
    from roadsigns.gateway.videos import video_container

    name = head.find(b'name="file"')
    start = head.find(b"\r\n\r\n", name) + 4 if name >= 0 else -1
    if name >= 0 and start >= 4 and len(head) >= start + 16:
        return "video" if video_container(head[start : start + 64]) else "photo"
    return None if head.startswith(b"--"[: len(head)]) and len(head) < _SNIFF_BYTES else "photo"


class BodyLimitMiddleware:
    """Refuse an oversized body: from its Content-Length before reading any of it, and, for a
    body without one (chunked), as soon as the bytes received pass the limit, not after
    the whole body has been spooled to disk.

    The body may exceed the upload limit by the multipart framing and form fields (1 MiB).
    A video (`max_video_bytes`) may be larger than a photo: a Content-Length up to the larger
    limit is let in, and the bytes are counted against the photo's limit (and a Content-Length
    over it refused) unless the `file` part's first bytes show a video
    (roadsigns.gateway.videos.video_container).
    """

    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_video_bytes: int | None = None) -> None:
        self.app, self.max_upload_bytes = app, max_upload_bytes
        self.limit = max_upload_bytes + 1024 * 1024
        self.video_limit = max(self.limit, (max_video_bytes or 0) + 1024 * 1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
        if length.isdigit() and int(length) > self.video_limit:
            limit = self.video_limit - 1024 * 1024
            detail = f"the request body is {int(length)} bytes; uploads are limited to {limit} bytes"
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        declared = int(length) if length.isdigit() else 0
        received = 0
        started = False
        limit = self.limit
        head: bytes | None = b"" if self.video_limit > self.limit else None  # None: no need to look

        async def counted_receive() -> Message:
            nonlocal received, limit, head
            message = await receive()
            if message["type"] == "http.request":
                body = message.get("body", b"")
                received += len(body)
                if head is not None:
                    head += body[: _SNIFF_BYTES - len(head)]
                    kind = _uploaded_kind(head)
                    if kind is not None:
                        limit, head = (self.video_limit if kind == "video" else self.limit), None
                if received > limit or (head is None and declared > limit):
                    raise BodyTooLarge(limit)  # FastAPI answers it as a 413 while parsing the form
            return message

        async def noting_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, noting_send)
        except BodyTooLarge as exc:  # raised where nothing turned it into an answer
            if started:
                raise
            await JSONResponse({"detail": exc.detail}, status_code=413, headers=exc.headers)(scope, receive, send)


# The page and everything else: scripts, styles and images from this origin only (and the
# inventory map's tile server, when ROADSIGNS_MAP_TILE_URL names one), no inline script, never
# framed. /docs and /redoc (Swagger UI and ReDoc load from a CDN with inline script) get only the
# framing rule.
def content_security_policy(img_origins: Sequence[str] = ()) -> str:
    images = " ".join(["'self'", "data:", "blob:", *img_origins])
    return (
        f"default-src 'self'; script-src 'self'; style-src 'self'; img-src {images}; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


_CSP = content_security_policy()
_DOCS_CSP = "frame-ancestors 'none'"
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeadersMiddleware:
    """`img_origins`: origins the page may load images from besides its own (the map's tile server)."""

    def __init__(self, app: ASGIApp, img_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.csp = content_security_policy(img_origins) if img_origins else _CSP

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        csp = _DOCS_CSP if path.startswith(("/docs", "/redoc")) else self.csp

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in _COMMON if k not in present]
                if b"content-security-policy" not in present:
                    extra.append((b"content-security-policy", csp.encode()))
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
