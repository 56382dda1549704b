"""The API from a client's side, against the real stack: the OpenAPI document, a client generated
from it by openapi-python-client, the SDK (roadsigns.sdk), its webhook check, and `roadsigns submit`.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from roadsigns.sdk import AsyncClient, Client, ClientError, Job, NotFound, Retry, verify_webhook
from roadsigns.sdk.models import SCHEMAS
from roadsigns.sdk.webhooks import WebhookError, sign
from tests.conftest import PHOTOS, iou
from tests.stack import BIN, Stack

PHOTO = PHOTOS / "00121.jpg"  # a photo with signs the model finds


@pytest.fixture(scope="module")
def spec(client: httpx.Client) -> dict:
    return client.get("/openapi.json").json()


@pytest.fixture(scope="module")
def sdk(stack: Stack):  # type: ignore[no-untyped-def]
    with Client(stack.gateway_url) as c:
        yield c


# -- the document ------------------------------------------------------------------------------


def test_the_document_is_valid_and_generators_can_read_it(spec: dict) -> None:
    validate(spec)
    ids = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"create_job", "get_job", "list_jobs", "get_image", "get_crop", "predict"} <= ids
    for name in ("Body_create_job", "Body_predict"):
        assert spec["components"]["schemas"][name]["properties"]["file"] == {
            "type": "string",
            "format": "binary",
            "title": "File",
            **({"description": "a photo, or a video (mp4, mov, mkv, webm, avi)"} if name == "Body_create_job" else {}),
        }
    assert "contentMediaType" not in json.dumps(spec)
    for path in spec["paths"].values():
        for op in path.values():
            for status, response in op["responses"].items():  # every answer, errors included, with its schema
                assert response.get("content") and all(c.get("schema") for c in response["content"].values()), (
                    op["operationId"],
                    status,
                )
                if status[0] in "45" and (op["operationId"], status) != ("ready", "503"):
                    assert "Error" in json.dumps(response["content"]["application/json"]["schema"]), (op, status)


def test_sdk_models_match_the_served_schemas(spec: dict) -> None:
    schemas = spec["components"]["schemas"]
    for model, name in SCHEMAS.items():
        served = schemas[name]
        ours = model.model_json_schema()
        assert set(ours["properties"]) == set(served["properties"]), (model.__name__, name)
        assert set(ours.get("required", [])) == set(served.get("required", [])), (model.__name__, name)


# -- a generated client ------------------------------------------------------------------------


def test_a_generated_client_uploads_a_photo(stack: Stack, spec: dict, tmp_path: Path) -> None:
    (tmp_path / "openapi.json").write_text(json.dumps(spec))
    subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", "openapi.json", "--meta", "none"]
        + ["--output-path", "rs_generated"],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},  # its post-hooks run ruff
        check=True,
        capture_output=True,
        timeout=180,
    )
    sys.path.insert(0, str(tmp_path))
    try:
        gen = importlib.import_module("rs_generated")
        create_job = importlib.import_module("rs_generated.api.jobs.create_job")
        get_job = importlib.import_module("rs_generated.api.jobs.get_job")
        models = importlib.import_module("rs_generated.models")
        types = importlib.import_module("rs_generated.types")
    finally:
        sys.path.remove(str(tmp_path))
    with gen.Client(base_url=stack.gateway_url, timeout=httpx.Timeout(30)) as api:
        body = models.BodyCreateJob(file=types.File(payload=PHOTO.open("rb"), file_name=PHOTO.name))
        created = create_job.sync_detailed(client=api, body=body)
        assert created.status_code == 202, created.content
        assert isinstance(created.parsed, models.JobOut)
        deadline = time.monotonic() + 240
        while (job := get_job.sync(client=api, job_id=created.parsed.id)).status.value not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert job.status.value == "done", job.error
        assert job.signs and all(len(s.bbox) == 4 for s in job.signs)
        missing = get_job.sync(client=api, job_id="no-such-job")
        assert isinstance(missing, models.Error) and "no job with id" in missing.detail


# -- the SDK -----------------------------------------------------------------------------------


def test_sdk_submit_wait_list_and_download(sdk: Client) -> None:
    submitted = sdk.submit(PHOTO)
    assert submitted.status == "queued" and submitted.filename == PHOTO.name
    job = sdk.wait(submitted.id, timeout=240)
    assert job.status == "done" and job.signs, job.error
    assert sdk.image(job.id)[:2] in (b"\xff\xd8", b"\x89P")  # JPEG or PNG
    assert sdk.crop(job.id, 0)[:8] == b"\x89PNG\r\n\x1a\n"
    assert job.id in {j.id for j in sdk.list_jobs(limit=100).items}
    assert job.id in {j.id for j in sdk.iter_jobs(status="done", page_size=1)}
    with pytest.raises(NotFound, match="has no sign 999"):
        sdk.crop(job.id, 999)


def test_sdk_raises_the_servers_message_for_a_4xx(sdk: Client) -> None:
    with pytest.raises(ClientError) as refused:
        sdk.submit(b"this is not a photo", filename="note.txt")
    assert refused.value.status_code == 415
    assert refused.value.message == refused.value.response.json()["detail"]  # type: ignore[union-attr]
    with pytest.raises(NotFound, match="no job with id 'nope'"):
        sdk.get_job("nope")


def test_sdk_retry_is_idempotent(stack: Stack) -> None:
    """A 503 with Retry-After, then the real answer: the SDK waits and resends the same upload
    with the same Idempotency-Key, and a later resend by hand gets the same job back."""

    class FlakyOnce(httpx.HTTPTransport):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str | None] = []

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            self.seen.append(request.headers.get("Idempotency-Key"))
            if len(self.seen) == 1:
                return httpx.Response(503, headers={"Retry-After": "1"}, json={"detail": "try again shortly"})
            return super().handle_request(request)

    flaky = FlakyOnce()
    with Client(stack.gateway_url, transport=flaky, retry=Retry(attempts=3)) as c:
        t0 = time.monotonic()
        first = c.submit(PHOTO)
        assert time.monotonic() - t0 >= 1.0  # Retry-After honoured
        assert len(flaky.seen) == 2 and flaky.seen[0] == flaky.seen[1]
        key = uuid.uuid4().hex
        a = c.submit(PHOTO, idempotency_key=key)
        b = c.submit(PHOTO, idempotency_key=key)
        assert a.id == b.id != first.id


def test_sdk_analyze_yields_every_photo(sdk: Client) -> None:
    photos = sorted(PHOTOS.glob("*.jpg"))[:3]
    got = dict(sdk.analyze(photos, timeout=300))
    assert set(got) == set(photos)
    assert all(job.status == "done" for job in got.values())


def test_async_client_submits_and_waits(stack: Stack) -> None:
    async def run() -> tuple[list[Job], list[Path]]:
        async with AsyncClient(stack.gateway_url) as rs:
            one = await rs.wait((await rs.submit(PHOTO.read_bytes(), filename=PHOTO.name)).id, timeout=240)
            photos = sorted(PHOTOS.glob("*.jpg"))[:2]
            done = [job async for _, job in rs.analyze(photos, timeout=300)]
            listed = [job async for job in rs.iter_jobs(page_size=2)]
            assert one.id in {j.id for j in listed}
            return [one, *done], photos

    jobs, photos = asyncio.run(run())
    assert len(jobs) == 1 + len(photos)
    assert all(job.status == "done" for job in jobs)


# -- webhooks ----------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    got: list[tuple[bytes, dict[str, str]]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.got.append((body, dict(self.headers)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_completion_webhook_verifies_in_one_call(sdk: Client) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        job = sdk.submit(PHOTO, callback_url=f"http://127.0.0.1:{server.server_port}/hook")
        deadline = time.monotonic() + 240
        while not _Receiver.got:
            assert time.monotonic() < deadline, "no webhook arrived"
            time.sleep(0.3)
    finally:
        server.shutdown()
    body, headers = _Receiver.got[0]
    delivered = verify_webhook(body, headers, "test-webhook-secret")  # ROADSIGNS_WEBHOOK_SECRET in tests/stack.py
    assert delivered.id == job.id and delivered.status == "done"
    with pytest.raises(WebhookError, match="signature"):
        verify_webhook(body.replace(b'"done"', b'"failed"'), headers, "test-webhook-secret")
    with pytest.raises(WebhookError, match="signature"):
        verify_webhook(body, headers, "another-secret")
    old = str(int(time.time()) - 3600)
    stale = {"X-Roadsigns-Timestamp": old, "X-Roadsigns-Signature": sign("test-webhook-secret", old, body)}
    with pytest.raises(WebhookError, match="timestamp"):
        verify_webhook(body, stale, "test-webhook-secret")


# -- roadsigns submit --------------------------------------------------------------------------


def test_roadsigns_submit_finds_what_analyze_finds(stack: Stack, tmp_path: Path) -> None:
    photos = [str(p) for p in sorted(PHOTOS.glob("*.jpg"))]
    env = {k: v for k, v in stack.env.items() if k != "ROADSIGNS_MLFLOW_TRACKING_URI"}
    for command in ("submit", "analyze"):
        extra = ["--url", stack.gateway_url] if command == "submit" else []
        subprocess.run(
            [str(BIN / "roadsigns"), command, *photos, "-o", str(tmp_path / f"{command}.json"), "--quiet", *extra],
            env=env,
            check=True,
            timeout=600,
        )
    submitted = json.loads((tmp_path / "submit.json").read_text())
    analyzed = json.loads((tmp_path / "analyze.json").read_text())
    assert [r["file"] for r in submitted] == [r["file"] for r in analyzed] == photos
    assert sum(len(r["signs"]) for r in submitted) > 0
    for remote, local in zip(submitted, analyzed, strict=True):
        assert set(remote) == set(local)
        assert remote["image_size"] == local["image_size"]
        assert len(remote["signs"]) == len(local["signs"]), remote["file"]
        for r, a in zip(remote["signs"], local["signs"], strict=True):
            assert set(r) == set(a)
            assert r["class_id"] == a["class_id"], remote["file"]
            assert iou(r["bbox"], a["bbox"]) > 0.99, (remote["file"], r["bbox"], a["bbox"])


def test_roadsigns_submit_reports_a_refused_file_and_goes_on(stack: Stack, tmp_path: Path) -> None:
    note = tmp_path / "note.png"
    note.write_text("not a photo")
    run = subprocess.run(
        [str(BIN / "roadsigns"), "submit", str(note), str(PHOTO), "--url", stack.gateway_url, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr
    refused, done = json.loads(run.stdout)
    assert refused["file"] == str(note) and "error" in refused and "signs" not in refused
    assert done["file"] == str(PHOTO) and done["signs"]
    down = subprocess.run(
        [str(BIN / "roadsigns"), "submit", str(PHOTO), "--url", "http://127.0.0.1:9", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 2 and "roadsigns: error:" in down.stderr and "Traceback" not in down.stderr
