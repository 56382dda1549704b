"""The hostile-upload corpus (tests/data/hostile) against the real gateway and workers.

Every case of manifest.json is posted as its own multipart request, built by hand so that
odd filenames, missing content types and repeated fields go out exactly as written. A
refused upload must get its 4xx with a clear `detail` and leave no job behind; an accepted
one must finish `done`, upright, with the sign where the ground truth says. Afterwards no
process may have died and the gateway log must hold no traceback.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from PIL import Image
from sqlalchemy import text

from tests.conftest import DATA, iou, read_gt, wait_for_job
from tests.stack import Stack

HOSTILE = DATA / "hostile"
CASES = json.loads((HOSTILE / "manifest.json").read_text())["cases"]
POOLS = ("detector", "ocr", "tracker")
STATUSES: list[int] = []  # every answer the gateway gave here, for the final zero-5xx check


def _escape(name: str) -> str:
    """Quote a form-data name or filename the way browsers do (WHATWG: %22, %0D, %0A)."""
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _multipart(parts: list[dict]) -> tuple[bytes, str]:
    boundary = f"hostile-{uuid.uuid4().hex}"
    body = bytearray()
    for part in parts:
        disposition = f'form-data; name="{_escape(part["field"])}"'
        if "text" in part:
            content = part["text"].encode()
            headers = f"Content-Disposition: {disposition}\r\n"
        else:
            content = (HOSTILE / part["path"]).read_bytes()
            headers = f'Content-Disposition: {disposition}; filename="{_escape(part["filename"])}"\r\n'
            if part["content_type"]:
                headers += f"Content-Type: {part['content_type']}\r\n"
        body += f"--{boundary}\r\n{headers}\r\n".encode() + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def _giant(size: int, chunked: bool) -> tuple[bytes | Iterator[bytes], str]:
    """A multipart body of about `size` bytes with one `file` part (a JPEG start, then zeros)."""
    boundary = "giant-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="giant.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + b"\xff\xd8\xff\xe0"
    tail = f"\r\n--{boundary}--\r\n".encode()
    filler = size - len(head) - len(tail)
    content_type = f"multipart/form-data; boundary={boundary}"
    if not chunked:
        return head + b"\x00" * filler + tail, content_type

    def stream() -> Iterator[bytes]:  # no Content-Length: httpx sends it chunked
        yield head
        for _ in range(filler // 65536):
            yield b"\x00" * 65536
        yield b"\x00" * (filler % 65536) + tail

    return stream(), content_type


def _post(client: httpx.Client, case: dict) -> httpx.Response:
    parts = case["parts"]
    if "giant_bytes" in parts[0]:
        body, content_type = _giant(parts[0]["giant_bytes"], parts[0]["chunked"])
    elif "raw" in parts[0]:
        body, content_type = parts[0]["raw"].encode(), parts[0]["content_type"]
    else:
        body, content_type = _multipart(parts)
    response = client.post("/jobs", content=body, headers={"Content-Type": content_type}, timeout=120)
    STATUSES.append(response.status_code)
    return response


def _job_count(db) -> int:  # type: ignore[no-untyped-def]
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar())


def upright_box(box: list[int], stored_size: list[int], orientation: int) -> tuple[int, ...]:
    """Where a box in the stored pixels lands once the EXIF orientation is applied."""
    left, top, right, bottom = box
    width, height = stored_size
    if orientation == 3:  # turned 180 degrees
        return (width - right, height - bottom, width - left, height - top)
    if orientation == 6:  # shown turned 90 degrees clockwise
        return (height - bottom, left, height - top, right)
    if orientation == 8:  # shown turned 90 degrees counter-clockwise
        return (top, width - right, bottom, width - left)
    return tuple(box)


@pytest.fixture(scope="module")
def before(stack: Stack) -> dict:
    """What must be unchanged after the corpus: worker children, and where the gateway log ends."""
    return {
        "children": {pool: {c.pid for c in psutil.Process(stack.procs[pool].pid).children()} for pool in POOLS},
        "log_offset": (stack.root / "gateway.log").stat().st_size,
    }


def test_corpus_is_big_enough() -> None:
    files = {p.name for p in HOSTILE.iterdir()} - {"make_corpus.py", "manifest.json", "__pycache__"}
    assert len(files) >= 40
    assert sum((HOSTILE / f).stat().st_size for f in files) < 1_500_000
    used = {p["path"] for c in CASES for p in c["parts"] if "path" in p}
    assert used == files, f"files not in the manifest: {files - used}; missing: {used - files}"
    assert len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hostile_upload(client: httpx.Client, db, stack: Stack, before: dict, case: dict) -> None:  # type: ignore[no-untyped-def]
    expect = case["expect"]
    jobs_before = _job_count(db)
    response = _post(client, case)
    assert response.status_code < 500, response.text

    if not expect.get("accepted"):
        assert response.status_code == expect["status"], (case["note"], response.text)
        detail = response.json()["detail"]
        assert isinstance(detail, str) and expect["detail_contains"].lower() in detail.lower(), detail
        assert _job_count(db) == jobs_before, "a refused upload left a job row"
        return

    assert response.status_code == 202, (case["note"], response.text)
    job_id = response.json()["id"]
    assert _job_count(db) == jobs_before + 1
    size = (expect["width"], expect["height"])
    assert (response.json()["image_width"], response.json()["image_height"]) == size

    job = wait_for_job(client, job_id)
    assert job["status"] == "done", (case["note"], job, stack.log("detector"))
    assert (job["image_width"], job["image_height"]) == size

    # The image the workers read: upright, decodable, 8-bit, no orientation left to apply.
    image = client.get(f"/jobs/{job_id}/image")
    assert image.status_code == 200
    seen = Image.open(io.BytesIO(image.content))
    assert seen.size == size and seen.mode in ("RGB", "L")
    assert seen.getexif().get(0x0112, 1) == 1

    part = case["parts"][0]
    if part["filename"] and '"' not in part["filename"]:
        assert job["filename"] == part["filename"].replace("\x00", "")[:255]
    assert not Path("/tmp/roadsigns-owned.jpg").exists(), "a filename was used as a path"

    if "sign" in expect:
        box = expect["sign"]["box"]
        if "orientation" in expect:
            # Turn the box as stored in the file; upright it must land on the ground truth.
            box = upright_box(expect["stored_box"], expect["stored_size"], expect["orientation"])
            left, top, right, bottom, class_id = read_gt()["00330.jpg"][0]
            assert box == (left, top, right + 1, bottom + 1) and class_id == expect["sign"]["class_id"]
        found = [s for s in job["signs"] if s["class_id"] == expect["sign"]["class_id"]]
        assert found, f"class {expect['sign']['class_id']} not found in {job['signs']}"
        assert max(iou(s["bbox"], box) for s in found) > 0.5, (box, found)


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/%00",
        "/jobs/a%00b/image",
        "/jobs/x/signs/0%00/crop",
        "/jobs?offset=100000000000000000000",
        "/jobs?limit=1e3",
        "/jobs?status=%00",
        "/jobs/" + "9" * 5000,
    ],
)
def test_hostile_paths(client: httpx.Client, path: str) -> None:
    """NUL bytes and huge numbers in the path or query: a 4xx, never a 5xx."""
    response = client.get(path)
    STATUSES.append(response.status_code)
    assert 400 <= response.status_code < 500, response.text
    assert isinstance(response.json()["detail"], str | list)


def test_nothing_died(client: httpx.Client, stack: Stack, before: dict) -> None:
    assert STATUSES, "no corpus case ran"
    assert all(code < 500 for code in STATUSES), STATUSES
    for name in ("gateway", *POOLS):
        assert stack.procs[name].poll() is None, f"{name} exited: {stack.log(name)}"
    for pool in POOLS:
        children = {c.pid for c in psutil.Process(stack.procs[pool].pid).children()}
        assert children, f"the {pool} pool has no worker processes"
        assert children == before["children"][pool], f"{pool} worker processes were replaced (one died)"
    with open(stack.root / "gateway.log", "rb") as log:
        log.seek(before["log_offset"])
        tail = log.read().decode(errors="replace")
    assert "Traceback" not in tail, tail[-4000:]
    assert client.get("/ready").status_code == 200
