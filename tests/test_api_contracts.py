"""Idempotency keys, completion webhooks and API keys, against the real running services."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest
from sqlalchemy import text

from tests.conftest import PHOTOS, wait_for_job
from tests.stack import free_port, gateway_command, wait_until

PHOTO = (PHOTOS / "00330.jpg").read_bytes()
OTHER = (PHOTOS / "00121.jpg").read_bytes()


def _post(client: httpx.Client, data: bytes, key: str | None = None, **form: str) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/jobs", files={"file": ("p.jpg", data, "image/jpeg")}, data=form, headers=headers)


def test_same_idempotency_key_and_upload_returns_the_same_job(client: httpx.Client, db) -> None:  # type: ignore[no-untyped-def]
    first = _post(client, PHOTO, "order-17")
    again = _post(client, PHOTO, "order-17")
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM jobs WHERE idempotency_key = 'order-17'")).scalar() == 1


def test_same_idempotency_key_with_another_upload_is_a_conflict(client: httpx.Client) -> None:
    job_id = _post(client, PHOTO, "order-18").json()["id"]
    response = _post(client, OTHER, "order-18")
    assert response.status_code == 409
    assert job_id in response.json()["detail"]


class _Receiver(BaseHTTPRequestHandler):
    """Answers 500 to the first two deliveries, then 200; keeps what it got."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(500 if len(self.received) <= 2 else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def receiver():  # type: ignore[no-untyped-def]
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.received
    server.shutdown()


def test_callback_is_signed_retried_and_recorded(client: httpx.Client, db, receiver) -> None:  # type: ignore[no-untyped-def]
    url, received = receiver
    job_id = _post(client, PHOTO, callback_url=url).json()["id"]
    assert wait_for_job(client, job_id)["status"] == "done"
    # Two refusals, then a delivery: backoff 1 s, then 2 s.
    wait_until(lambda: len(received) >= 3, 60, "three webhook deliveries")
    headers, body = received[-1]
    payload = json.loads(body)
    assert payload["id"] == job_id and payload["status"] == "done" and payload["signs"]
    mac = hmac.new(b"test-webhook-secret", headers["X-Roadsigns-Timestamp"].encode() + b"." + body, hashlib.sha256)
    assert headers["X-Roadsigns-Signature"] == f"sha256={mac.hexdigest()}"

    def recorded() -> tuple | None:
        with db.connect() as conn:
            row = conn.execute(
                text("SELECT callback_status, callback_attempts FROM jobs WHERE id = :j"), {"j": job_id}
            ).one()
        return row if row[0] and row[0].startswith("delivered") else None

    status, attempts = wait_until(recorded, 30, "the delivery to be recorded")
    assert attempts == 3 and status == "delivered: HTTP 200"


def test_bad_callback_url_is_refused(client: httpx.Client) -> None:
    response = _post(client, PHOTO, callback_url="ftp://example.org/x")
    assert response.status_code == 422
    assert "callback_url" in response.json()["detail"]


def test_api_keys_when_configured(stack) -> None:  # type: ignore[no-untyped-def]
    """A second gateway over the same stack, with keys on: no key 401, wrong key 403, right key 202."""
    import subprocess

    port = free_port()
    env = {**stack.env, "ROADSIGNS_API_KEYS": '["k-one", "k-two"]'}
    proc = subprocess.Popen(
        gateway_command(port),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx.get(f"{base}/health", timeout=1).status_code == 200, 30, "keyed gateway")
        files = {"file": ("p.jpg", PHOTO, "image/jpeg")}
        assert httpx.post(f"{base}/jobs", files=files).status_code == 401
        assert httpx.post(f"{base}/jobs", files=files, headers={"X-API-Key": "nope"}).status_code == 403
        ok = httpx.post(f"{base}/jobs", files=files, headers={"X-API-Key": "k-two"})
        assert ok.status_code == 202
        # Keys written without a tenant (the JSON list of before) all belong to the tenant "default".
        assert httpx.get(f"{base}/jobs/{ok.json()['id']}", headers={"X-API-Key": "k-one"}).status_code == 200
        assert httpx.get(f"{base}/health").status_code == 200  # probes stay open
    finally:
        proc.terminate()
        proc.wait(10)
