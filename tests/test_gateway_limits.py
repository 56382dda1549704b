"""The gateway under hostile clients, with real sockets: a chunked body is cut at the limit while
it streams; uploads are rate-limited per tenant (429, Retry-After); every answer carries the
security headers, and the page's CSP allows no inline script."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.stack import Stack, extra_gateway

LIMIT = 8 * 1024 * 1024 + 1024 * 1024  # tests/stack.py's ROADSIGNS_MAX_UPLOAD_BYTES plus the form's allowance


def test_a_chunked_body_is_cut_at_the_limit_while_it_streams(stack: Stack) -> None:
    """No Content-Length, so only counting the bytes as they arrive can stop it: 300 MB offered,
    the 413 comes after about the limit, not after the whole body."""
    url = urlsplit(stack.gateway_url)
    boundary = "b0undary"
    head = (
        f"POST /jobs HTTP/1.1\r\nHost: {url.netloc}\r\nTransfer-Encoding: chunked\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
    ).encode()
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    chunk = b"\xff" * 65536
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        try:
            while sent < 300 * 1024 * 1024 and not select.select([sock], [], [], 0)[0]:  # until it answers
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except OSError:  # the gateway answered and closed the connection
            pass
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"connection: close" in answer.lower()
    # What got through before the cut: the limit, plus what the sockets' buffers held.
    assert sent < LIMIT + 32 * 1024 * 1024, f"{sent / 1e6:.0f} MB sent before the 413"


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[str]:
    with extra_gateway(stack, ROADSIGNS_API_KEYS="alpha:key-a,beta:key-b", ROADSIGNS_RATE_LIMIT="3/minute") as base:
        yield base


def test_uploads_are_rate_limited_per_tenant(limited: str) -> None:
    def upload(key: str) -> httpx.Response:
        # An empty file: refused (400) after the limit is counted, so no job is made.
        return httpx.post(f"{limited}/jobs", files={"file": ("x.jpg", b"", "image/jpeg")}, headers={"X-API-Key": key})

    assert [upload("key-a").status_code for _ in range(3)] == [400, 400, 400]
    refused = upload("key-a")
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "3/minute" in refused.json()["detail"]
    assert upload("key-b").status_code == 400  # the other tenant has its own budget


def test_security_headers_and_a_csp_without_inline_script(client: httpx.Client) -> None:
    for path in ("/", "/static/app.js", "/jobs", "/health", "/jobs/nope"):
        response = client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["referrer-policy"] == "no-referrer", path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
    page = client.get("/").text
    assert "<script>" not in page and "<script " in page  # scripts come from files only
    assert "frame-ancestors 'none'" in client.get("/docs").headers["content-security-policy"]


def test_a_slow_upload_does_not_block_others(client: httpx.Client) -> None:
    """Sanity: the gateway keeps answering while one client dribbles a body."""
    url = urlsplit(str(client.base_url))
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        t0 = time.monotonic()
        assert client.get("/health").status_code == 200
        assert time.monotonic() - t0 < 5
