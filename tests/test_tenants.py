"""Tenants, against the real services: two API keys of two tenants cannot see each other's jobs,
images, crops or idempotency keys; staging and production refuse to start without keys."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import PHOTOS, wait_for_job
from tests.stack import LINK_SECRET, Stack, extra_gateway, free_port, gateway_command, wait_until

PHOTO = (PHOTOS / "00330.jpg").read_bytes()
OTHER = (PHOTOS / "00121.jpg").read_bytes()
KEY_A, KEY_B = "alpha-secret-key", "beta-secret-key"
# Tenant beta's key is configured only as its SHA-256: no plain key stored.
KEYS = f"alpha:{KEY_A}, beta:sha256:{hashlib.sha256(KEY_B.encode()).hexdigest()}"


@pytest.fixture(scope="module")
def keyed(stack: Stack) -> Iterator[str]:
    """A second gateway over the session's stack (same database and workers), with two tenants."""
    port = free_port()
    proc = subprocess.Popen(
        gateway_command(port),
        env={**stack.env, "ROADSIGNS_API_KEYS": KEYS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(f"{base}/ready", timeout=1).status_code == 200, 60, "keyed gateway")
        yield base
    finally:
        proc.terminate()
        proc.wait(10)


def _client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)


def _post(client: httpx.Client, data: bytes, idempotency_key: str) -> httpx.Response:
    files = {"file": ("p.jpg", data, "image/jpeg")}
    return client.post("/jobs", files=files, headers={"Idempotency-Key": idempotency_key})


def test_two_tenants_cannot_see_each_other(keyed: str, client: httpx.Client) -> None:
    with _client(keyed, KEY_A) as alpha, _client(keyed, KEY_B) as beta:
        made = _post(alpha, PHOTO, "order-1")
        assert made.status_code == 202, made.text
        job_id = made.json()["id"]
        job = wait_for_job(alpha, job_id)
        assert job["status"] == "done" and job["signs"], job
        crop = job["signs"][0]["crop_url"].split("?")[0]

        # The owner reads everything with the header; the job's signed links open without a key.
        assert alpha.get(f"/jobs/{job_id}/image").status_code == 200
        assert alpha.get(crop).status_code == 200
        assert httpx.get(f"{keyed}{job['links']['image']}").status_code == 200
        assert httpx.get(f"{keyed}{job['signs'][0]['crop_url']}").status_code == 200

        # The other tenant: every route answers as for a job that never existed.
        for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/image", crop):
            response = beta.get(path)
            assert response.status_code == 404, (path, response.status_code)
            assert response.json() == {"detail": f"no job with id {job_id!r}"}
        listed = beta.get("/jobs", params={"limit": 100}).json()
        assert job_id not in [j["id"] for j in listed["items"]]

        # The same Idempotency-Key from the other tenant is a new job of its own, not a replay or a 409.
        theirs = _post(beta, OTHER, "order-1")
        assert theirs.status_code == 202, theirs.text
        assert theirs.json()["id"] != job_id and "idempotent-replayed" not in theirs.headers
        again = _post(beta, OTHER, "order-1")
        assert again.json()["id"] == theirs.json()["id"] and again.headers["idempotent-replayed"] == "true"

        # Each list holds only its own tenant's jobs (other tests may have left jobs of either tenant).
        beta_ids = {j["id"] for j in beta.get("/jobs", params={"limit": 100}).json()["items"]}
        alpha_ids = {j["id"] for j in alpha.get("/jobs", params={"limit": 100}).json()["items"]}
        assert theirs.json()["id"] in beta_ids and job_id in alpha_ids
        assert not alpha_ids & beta_ids

    # The session's gateway has no keys (development): one tenant, "default", which sees neither.
    assert client.get(f"/jobs/{job_id}").status_code == 404


def test_keys_only_in_the_header(keyed: str) -> None:
    files = {"file": ("p.jpg", PHOTO, "image/jpeg")}
    assert httpx.post(f"{keyed}/jobs", files=files).status_code == 401
    assert httpx.post(f"{keyed}/jobs", files=files, headers={"X-API-Key": KEY_A + "x"}).status_code == 403
    # A hash is not a key: the configured digest itself does not open tenant beta.
    digest = hashlib.sha256(KEY_B.encode()).hexdigest()
    assert httpx.get(f"{keyed}/jobs", headers={"X-API-Key": f"sha256:{digest}"}).status_code == 403
    paths = ("/jobs", "/jobs/x", "/jobs/x/image", "/jobs/x/signs/0/crop")
    for method, path in [("POST", "/jobs"), ("POST", "/predict"), *(("GET", p) for p in paths)]:
        response = httpx.request(method, f"{keyed}{path}", params={"api_key": KEY_A}, files=files)
        assert response.status_code == 401, (method, path)
        assert "X-API-Key header" in response.json()["detail"]


def _signed(tenant: str, path: str, expires: int) -> str:
    """A link signed as roadsigns.gateway.links does, with the test stack's ROADSIGNS_LINK_SECRET."""
    sig = hmac.new(LINK_SECRET.encode(), f"{tenant}\n{path}\n{expires}".encode(), hashlib.sha256).hexdigest()
    return f"{path}?expires={expires}&sig={sig}"


def test_signed_links_open_one_picture_of_one_tenant(keyed: str) -> None:
    """The job's image link carries no key; changing its path, job, expiry or signature, or
    signing it for another tenant, gives 403; so does a correctly signed link past its expiry."""
    with _client(keyed, KEY_A) as alpha, _client(keyed, KEY_B) as beta:
        mine = _post(alpha, PHOTO, "links-1").json()["id"]
        theirs = _post(beta, OTHER, "links-1").json()["id"]
        link = alpha.get(f"/jobs/{mine}").json()["links"]["image"]
        assert "api_key" not in link and KEY_A not in link
        assert [j["links"]["image"] for j in alpha.get("/jobs").json()["items"] if j["id"] == mine] == [link]
        opened = httpx.get(f"{keyed}{link}")
        assert opened.status_code == 200 and opened.headers["content-type"].startswith("image/")

        path, query = link.split("?")
        expires, sig = int(parse_qs(query)["expires"][0]), parse_qs(query)["sig"][0]
        assert time.time() + 60 < expires <= time.time() + 2 * 900  # ROADSIGNS_LINK_TTL_S: 15 min
        other_sig = sig[:-1] + ("1" if sig[-1] == "0" else "0")
        refused = [
            f"/jobs/{theirs}/image?{query}",  # the signature on another tenant's job
            f"/jobs/{mine}/signs/0/crop?{query}",  # on another path
            f"{path}?expires={expires + 300}&sig={sig}",  # a later expiry
            f"{path}?expires={expires}&sig={other_sig}",
            f"{path}?expires={expires}",
            _signed("beta", path, expires),  # signed for tenant beta: does not open alpha's job
            _signed("alpha", path, int(time.time()) - 1),  # expired
        ]
        for bad in refused:
            response = httpx.get(f"{keyed}{bad}")
            assert response.status_code == 403, (bad, response.status_code)
        assert httpx.get(f"{keyed}{_signed('alpha', path, int(time.time()) + 60)}").status_code == 200
        assert urlsplit(beta.get(f"/jobs/{theirs}").json()["links"]["image"]).path == f"/jobs/{theirs}/image"


def test_a_signed_link_works_until_it_expires(stack: Stack) -> None:
    with extra_gateway(stack, ROADSIGNS_API_KEYS=KEYS, ROADSIGNS_LINK_TTL_S="2") as (base, _pid):
        with _client(base, KEY_A) as alpha:
            job_id = _post(alpha, PHOTO, "expiring-1").json()["id"]
            link = alpha.get(f"/jobs/{job_id}").json()["links"]["image"]
        expires = int(parse_qs(urlsplit(link).query)["expires"][0])
        assert httpx.get(f"{base}{link}").status_code == 200
        time.sleep(max(0.0, expires - time.time()) + 1.5)
        assert httpx.get(f"{base}{link}").status_code == 403


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        self.received.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_tenants_webhook_is_signed_with_its_own_secret(keyed: str) -> None:
    """ROADSIGNS_WEBHOOK_SECRETS (tests/stack.py) gives tenant alpha a secret of its own: the
    shared one would let one tenant forge another's callbacks. The outcome shows on the job."""
    server = HTTPServer(("127.0.0.1", free_port()), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.received = []
    try:
        with _client(keyed, KEY_A) as alpha:
            files = {"file": ("p.jpg", PHOTO, "image/jpeg")}
            url = f"http://127.0.0.1:{server.server_port}/hook"
            made = alpha.post("/jobs", files=files, data={"callback_url": url}).json()
            assert made["callback"] == {"status": None, "attempts": 0}
            wait_for_job(alpha, made["id"])
            wait_until(lambda: _Receiver.received, 60, "the callback")
            headers, body = _Receiver.received[0]
            signed = headers["X-Roadsigns-Timestamp"].encode() + b"." + body
            mac = hmac.new(b"alpha-webhook-secret", signed, hashlib.sha256).hexdigest()
            assert headers["X-Roadsigns-Signature"] == f"sha256={mac}"
            shared = hmac.new(b"test-webhook-secret", signed, hashlib.sha256).hexdigest()
            assert headers["X-Roadsigns-Signature"] != f"sha256={shared}"

            def delivered() -> dict | None:
                callback = alpha.get(f"/jobs/{made['id']}").json()["callback"]
                return callback if callback["status"] == "delivered: HTTP 200" else None

            assert wait_until(delivered, 30, "the outcome on the job") == {
                "status": "delivered: HTTP 200",
                "attempts": 1,
            }
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("environment", "keys", "link_secret", "message"),
    [
        ("production", None, True, "ROADSIGNS_ENVIRONMENT=production needs ROADSIGNS_API_KEYS"),
        ("staging", "", True, "ROADSIGNS_ENVIRONMENT=staging needs ROADSIGNS_API_KEYS"),
        ("production", "alpha:sha256:1234", True, "entry 1: sha256: must be followed by 64 hex digits"),
        ("production", KEYS, False, "ROADSIGNS_ENVIRONMENT=production needs ROADSIGNS_LINK_SECRET"),
    ],
)
def test_staging_and_production_refuse_to_start_without_keys(
    stack: Stack, environment: str, keys: str | None, link_secret: bool, message: str
) -> None:
    env = {**stack.env, "ROADSIGNS_ENVIRONMENT": environment}
    env.pop("ROADSIGNS_API_KEYS", None)
    if not link_secret:
        env.pop("ROADSIGNS_LINK_SECRET")
    if keys is not None:
        env["ROADSIGNS_API_KEYS"] = keys
    done = subprocess.run(gateway_command(free_port()), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[-2000:]
