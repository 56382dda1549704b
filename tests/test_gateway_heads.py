"""Request heads against the real uvicorn, over raw sockets: a head trickled a byte every 3 s is
cut at the deadline (ROADSIGNS_HEADER_TIMEOUT_S, 10 s), a 32 MB header is refused with 431 after
about 64 kB, and past `--limit-concurrency` connections the gateway answers 503 and recovers."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import httpx

from tests.stack import Stack, extra_gateway


def _connect(base_url: str) -> socket.socket:
    url = urlsplit(base_url)
    return socket.create_connection((url.hostname, url.port), timeout=30)


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed: a read gives EOF (or a reset)."""
    sock.settimeout(0.05)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def test_a_head_trickled_a_byte_every_3_s_is_cut_at_the_deadline(stack: Stack) -> None:
    sock = _connect(stack.gateway_url)
    t0 = time.monotonic()
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    sent = 0
    try:
        while time.monotonic() - t0 < 30:
            try:
                sock.sendall(head[sent : sent + 1])
            except ConnectionError:
                break
            sent += 1
            deadline = time.monotonic() + 3
            closed = False
            while time.monotonic() < deadline and not (closed := _closed(sock)):
                time.sleep(0.2)
            if closed:
                break
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
    assert sent >= 3, "the connection was closed before the deadline"
    assert 9 <= elapsed <= 14, f"a slow head was held {elapsed:.1f} s (deadline 10 s)"


def test_a_32_mb_header_is_refused_with_431_after_the_first_64_kb(stack: Stack) -> None:
    sock = _connect(stack.gateway_url)
    sent = 0
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        chunk = b"a" * 65536
        try:
            while sent < 32 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except ConnectionError:
            pass
        sock.settimeout(10)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionError:
            pass
    finally:
        sock.close()
    assert sent < 8 * 1024 * 1024, f"the gateway read {sent} bytes of one header"
    if answer:  # a reset may reach us before the answer does; either way the head was refused
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert httpx.get(f"{stack.gateway_url}/health", timeout=10).status_code == 200


def test_past_the_connection_limit_the_gateway_answers_503_and_recovers(stack: Stack) -> None:
    with extra_gateway(stack, limit_concurrency=4) as (base, _pid):
        idle = [_connect(base) for _ in range(6)]
        for sock in idle:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # a head begun, not finished
        try:
            time.sleep(0.5)
            busy = httpx.get(f"{base}/health", timeout=10)
            assert busy.status_code == 503, busy.text
        finally:
            for sock in idle:
                sock.close()
        time.sleep(0.5)
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
