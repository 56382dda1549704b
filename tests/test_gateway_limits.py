"""The gateway under hostile clients, with real sockets: a chunked body is cut at the limit while
it streams; uploads are rate-limited per tenant (429, Retry-After); every answer carries the
security headers, and the page's CSP allows no inline script."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from tests.conftest import PHOTOS
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
    with extra_gateway(stack, ROADSIGNS_API_KEYS="alpha:key-a,beta:key-b", ROADSIGNS_RATE_LIMIT="3/minute") as (
        base,
        _,
    ):
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


def _truncated_png(width: int = 6000, height: int = 6600) -> bytes:
    """115 kB that declare 6000x6600 pixels (zeros compress well), cut ten rows before the end:
    Pillow fills the whole image (158 MB) before it finds the rest missing."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    stream = zlib.compressobj(9)
    rows = stream.compress(b"\0" * ((1 + width * 3) * (height - 10))) + stream.flush(zlib.Z_SYNC_FLUSH)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)


def test_a_flood_of_decode_bombs_leaves_the_gateway_within_its_memory(stack: Stack) -> None:
    """The review's flood: 24 truncated 6000x6600 PNGs, 8 at a time, took the gateway from 105 MB
    to 1,322 MB. With the decode budget (ROADSIGNS_DECODE_BUDGET_BYTES, 384 MB) one such decode
    runs at a time; the gateway's resident memory is sampled throughout."""
    bomb = _truncated_png()
    with extra_gateway(stack, ROADSIGNS_MAX_PIXELS="40000000") as (base, pid):
        process = psutil.Process(pid)
        start = process.memory_info().rss
        peak = start
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, process.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample)
        sampler.start()

        def upload(_: int) -> int:
            files = {"file": ("bomb.png", bomb, "image/png")}
            return httpx.post(f"{base}/jobs", files=files, timeout=120).status_code

        try:
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(upload, range(24)))
        finally:
            done.set()
            sampler.join()
        assert statuses == [400] * 24, statuses
        assert peak - start < 400 * 1024 * 1024, f"RSS {start / 1e6:.0f} MB -> peak {peak / 1e6:.0f} MB"
        # And the gateway still answers a real photo.
        photo = (PHOTOS / "00330.jpg").read_bytes()
        assert httpx.post(f"{base}/jobs", files={"file": ("p.jpg", photo, "image/jpeg")}).status_code == 202
