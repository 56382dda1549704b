"""Hostile callback URLs and receivers, against real servers and the real services.

- callback_url with a loopback, private, link-local, multicast or reserved literal host, in
  every spelling a resolver takes, or with a user name, is a 422 at submit;
- a host name that resolves to such an address is refused again at connect time, before any
  byte is sent (the transport resolves once and checks every address);
- a receiver that trickles its answer is cut at the attempt's deadline, and meanwhile other
  jobs finish as usual (webhooks have their own queue and pool);
- a huge or gzip-bombed answer is not read beyond the cap, nor decompressed.
"""

from __future__ import annotations

import gzip
import socket
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from sqlalchemy import text

from roadsigns.shared.callbacks import CallbackRefused
from roadsigns.tracker import safe_http
from tests.conftest import PHOTOS, wait_for_job
from tests.stack import Stack, free_port, gateway_command, wait_until

PHOTO = (PHOTOS / "00330.jpg").read_bytes()


@pytest.fixture(scope="module")
def strict_gateway(stack: Stack) -> Iterator[str]:
    """A second gateway over the session's stack with the callback address rule on (the
    test stack turns it off so that its receivers on 127.0.0.1 can be called)."""
    port = free_port()
    env = {**stack.env, "ROADSIGNS_CALLBACK_ALLOW_PRIVATE": "false"}
    proc = subprocess.Popen(gateway_command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/ready", timeout=1).status_code == 200, 60, "strict gateway")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://127.1/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://0177.0.0.1/hook",
        "http://[::1]:8000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://localhost:8000/hook",
        "http://LocalHost./hook",
        "http://api.localhost/hook",
        "http://0.0.0.0/hook",
        "http://10.1.2.3/hook",
        "http://172.16.0.1/hook",
        "http://192.168.0.1/hook",
        "http://100.64.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fe80::1]/hook",
        "http://[fd00::1]/hook",
        "http://224.0.0.251/hook",
        "http://240.0.0.1/hook",
        "https://user:password@hooks.example.com/hook",
        "https://hooks.example.com\\@127.0.0.1/hook",
    ],
)
def test_private_or_credentialed_callback_is_refused_at_submit(strict_gateway: str, db, url: str) -> None:  # type: ignore[no-untyped-def]
    with db.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM jobs")).scalar()
    files = {"file": ("p.jpg", PHOTO, "image/jpeg")}
    response = httpx.post(f"{strict_gateway}/jobs", files=files, data={"callback_url": url}, timeout=30)
    assert response.status_code == 422, response.text
    assert "callback_url" in response.json()["detail"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == before  # no job, no message


def test_a_public_host_name_is_accepted_at_submit(strict_gateway: str) -> None:
    files = {"file": ("p.jpg", PHOTO, "image/jpeg")}
    url = "https://hooks.example.com/roadsigns?tenant=acme"
    response = httpx.post(f"{strict_gateway}/jobs", files=files, data={"callback_url": url}, timeout=30)
    assert response.status_code == 202, response.text


class _Server:
    """A real HTTP server on 127.0.0.1 whose handler the test chooses; counts connections."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.daemon_threads = True
        self.server.requests = []  # type: ignore[attr-defined]
        self.server.sent = 0  # type: ignore[attr-defined]
        self.server.closed_after = []  # type: ignore[attr-defined]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_port

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.server.requests.append(self.rfile.read(int(self.headers["Content-Length"])))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _post(url: str, allow_private: bool, deadline_s: float = 5.0) -> int:
    return safe_http.post(
        url, b'{"id": "x"}', {"Content-Type": "application/json"}, deadline_s=deadline_s,
        max_response_bytes=64 * 1024, allow_private=allow_private,
    )  # fmt: skip


def test_a_name_that_resolves_to_a_private_address_is_refused_at_connect_time() -> None:
    """This machine's own name is no literal, so the submit check lets it through; it resolves
    to a loopback or private address, which the transport refuses before connecting."""
    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    server = _Server(_Ok)
    try:
        with pytest.raises(CallbackRefused, match="not a public address: refused at connect time"):
            _post(f"http://{name}:{server.port}/hook", allow_private=False)
        assert server.server.requests == []  # type: ignore[attr-defined]
        if "127.0.0.1" in addresses:  # the same call, with the rule lifted (development), is delivered
            assert _post(f"http://{name}:{server.port}/hook", allow_private=True) == 200
            assert server.server.requests == [b'{"id": "x"}']  # type: ignore[attr-defined]
    finally:
        server.close()


class _Trickle(BaseHTTPRequestHandler):
    """Reads the request, then answers one byte a second, for ever."""

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append(time.monotonic())  # type: ignore[attr-defined]
        try:
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            self.server.closed_after.append(time.monotonic() - self.server.requests[-1])  # type: ignore[attr-defined]
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


def test_a_trickling_receiver_is_cut_at_the_deadline_and_delays_no_job(client: httpx.Client, db) -> None:  # type: ignore[no-untyped-def]
    server = _Server(_Trickle)
    try:
        url = f"http://127.0.0.1:{server.port}/hook"
        files = {"file": ("p.jpg", PHOTO, "image/jpeg")}
        slow = client.post("/jobs", files=files, data={"callback_url": url}).json()["id"]
        wait_until(lambda: server.server.requests, 240, "the webhook to reach the trickling receiver")  # type: ignore[attr-defined]
        # While the webhook pool is held by the trickle, an unrelated job goes through.
        t0 = time.monotonic()
        other = client.post("/jobs", files=files).json()["id"]
        assert wait_for_job(client, other)["status"] == "done"
        took = time.monotonic() - t0
        # The attempt ends at its 5 s deadline (ROADSIGNS_WEBHOOK_TIMEOUT_S), not after 10,000 s.
        wait_until(lambda: server.server.closed_after, 30, "the webhook to give up on the trickle")  # type: ignore[attr-defined]
        assert server.server.closed_after[0] < 5 + 2.5, server.server.closed_after  # type: ignore[attr-defined]

        def recorded() -> str | None:
            with db.connect() as conn:
                status = conn.execute(text("SELECT callback_status FROM jobs WHERE id = :j"), {"j": slow}).scalar()
            return status if status and "deadline" in status else None

        assert "retrying: DeadlinePassed" in wait_until(recorded, 30, "the deadline to be recorded on the job")
        assert took < 30, f"an unrelated job took {took:.1f} s while a webhook trickled"
    finally:
        server.close()


def _bulk_handler(body: bytes, encoding: str | None) -> type[BaseHTTPRequestHandler]:
    class Bulk(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.end_headers()
            try:
                for i in range(0, len(body), 65536):
                    self.wfile.write(body[i : i + 65536])
                    self.server.sent += len(body[i : i + 65536])  # type: ignore[attr-defined]
            except OSError:
                pass

        def log_message(self, *args: object) -> None:
            pass

    return Bulk


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"x" * (40 * 1024 * 1024), None),  # a 40 MB answer
        (gzip.compress(b"\0" * (256 * 1024 * 1024), compresslevel=9), "gzip"),  # ~250 kB that inflates to 256 MB
    ],
    ids=["40MB", "gzip-bomb"],
)
def test_a_huge_or_compressed_answer_is_not_read_beyond_the_cap(body: bytes, encoding: str | None) -> None:
    server = _Server(_bulk_handler(body, encoding))
    try:
        tracemalloc.start()
        t0 = time.monotonic()
        status = _post(f"http://127.0.0.1:{server.port}/hook", allow_private=True)
        took = time.monotonic() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert status == 200
        assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB allocated while reading the answer"
        assert took < 5
        time.sleep(0.5)
        if len(body) > 16 * 1024 * 1024:  # what the server pushed before the close: the cap plus socket buffers
            assert server.server.sent < 16 * 1024 * 1024, server.server.sent  # type: ignore[attr-defined]
    finally:
        server.close()
