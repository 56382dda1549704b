"""Every kind of bad upload gets a 4xx with a clear message, creates no job, crashes nothing."""

from __future__ import annotations

import io

import httpx
import pytest
from PIL import Image
from sqlalchemy import text

from tests.conftest import PHOTOS


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, format="PNG")
    return out.getvalue()


JPEG = (PHOTOS / "00330.jpg").read_bytes()

CASES = [
    # (id, files, data, expected status, words the message must contain)
    ("empty", {"file": ("a.jpg", b"", "image/jpeg")}, None, 400, "empty"),
    (
        "text-named-jpg",
        {"file": ("a.jpg", b"hello, this is not a photo\n" * 20, "image/jpeg")},
        None,
        415,
        "not an image",
    ),
    ("truncated-jpeg", {"file": ("a.jpg", JPEG[: len(JPEG) // 3], "image/jpeg")}, None, 400, "truncated"),
    (
        "corrupt-header",
        {"file": ("a.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png")},
        None,
        415,
        "not an image",
    ),
    ("too-many-pixels", {"file": ("big.png", _png((6000, 6000), "L"), "image/png")}, None, 413, "pixels"),
    ("too-small", {"file": ("tiny.png", _png((4, 4)), "image/png")}, None, 422, "at least"),
    ("too-many-bytes", {"file": ("huge.jpg", JPEG + b"\x00" * (8 * 1024 * 1024), "image/jpeg")}, None, 413, "limit"),
    ("wrong-field", {"image": ("a.jpg", JPEG, "image/jpeg")}, None, 422, "missing form field 'file'"),
    ("field-not-a-file", None, {"file": "just text"}, 422, "file"),
    ("no-body", None, None, 422, "missing form field 'file'"),
]


def _job_count(db) -> int:  # type: ignore[no-untyped-def]
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM jobs")).scalar())


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_upload_is_refused(client: httpx.Client, db, case) -> None:  # type: ignore[no-untyped-def]
    _, files, data, status, words = case
    before = _job_count(db)
    response = client.post("/jobs", files=files, data=data)
    assert response.status_code == status, response.text
    assert words.lower() in response.json()["detail"].lower()
    assert _job_count(db) == before
    assert client.get("/health").status_code == 200


def test_giant_body_refused_from_content_length(client: httpx.Client, db) -> None:  # type: ignore[no-untyped-def]
    before = _job_count(db)
    body = b"x" * (10 * 1024 * 1024)
    response = client.post("/jobs", content=body, headers={"content-type": "multipart/form-data; boundary=zzz"})
    assert response.status_code == 413
    assert "limited" in response.json()["detail"]
    assert _job_count(db) == before


def test_unknown_job_is_404(client: httpx.Client) -> None:
    response = client.get("/jobs/does-not-exist")
    assert response.status_code == 404
    assert "no job" in response.json()["detail"]


def test_bad_pagination_is_422(client: httpx.Client) -> None:
    response = client.get("/jobs", params={"limit": 0})
    assert response.status_code == 422
    assert "limit" in response.json()["detail"]
