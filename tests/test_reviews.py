"""The review queue and the dataset export, against the real services: queued signs, each kind of
decision with who and when, tenant isolation, clear 422s, and `roadsigns dataset export` into
folders that training's readers load.

The gateway here queues every sign (ROADSIGNS_REVIEW_BELOW=1.0: every confidence is below it), so
the queue does not depend on how sure the model happens to be about the test photos.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from sqlalchemy import text

from tests.conftest import PHOTOS, wait_for_job
from tests.stack import BIN, Stack, extra_gateway
from tests.test_web import CHROMIUM, CHROMIUM_ARGS, DESKTOP, screenshot

KEY_A, KEY_B, KEY_G = "alpha-review-key", "beta-review-key", "gamma-review-key"
KEYS = f"alpha:{KEY_A},beta:{KEY_B},gamma:{KEY_G}"
REVIEW_ENV = {"ROADSIGNS_API_KEYS": KEYS, "ROADSIGNS_REVIEW_BELOW": "1.0"}


def key_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> Iterator[str]:
    with extra_gateway(stack, **REVIEW_ENV) as (base, _pid):
        yield base


def _client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30)


def submit(client: httpx.Client, name: str) -> dict:
    made = client.post("/jobs", files={"file": (name, (PHOTOS / name).read_bytes(), "image/jpeg")})
    assert made.status_code == 202, made.text
    job = wait_for_job(client, made.json()["id"])
    assert job["status"] == "done" and job["signs"], job
    return job


def queue(client: httpx.Client) -> list[dict]:
    page = client.get("/reviews", params={"limit": 100})
    assert page.status_code == 200, page.text
    assert page.json()["total"] == len(page.json()["items"])
    return page.json()["items"]


def export(stack: Stack, out: Path, tenant: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "roadsigns"), "dataset", "export", "--out", str(out), "--tenant", tenant, *extra],
        env={**stack.env, **REVIEW_ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def jobs(gateway: str) -> dict[str, dict]:
    """Tenant alpha's two finished jobs: a photo with three signs and one with four."""
    with _client(gateway, KEY_A) as alpha:
        return {name: submit(alpha, name) for name in ("00224.jpg", "00501.jpg")}


def test_low_confidence_and_open_set_signs_are_queued(gateway: str, jobs: dict, db, client: httpx.Client) -> None:  # type: ignore[no-untyped-def]
    job = jobs["00224.jpg"]
    with _client(gateway, KEY_A) as alpha, _client(gateway, KEY_B) as beta:
        items = [i for i in queue(alpha) if i["job_id"] == job["id"]]
        assert [i["sign_index"] for i in items] == list(range(len(job["signs"])))
        for item, sign in zip(items, job["signs"], strict=True):
            assert "low_confidence" in item["reasons"], item
            assert item["bbox"] == sign["bbox"] and item["class_name"] == sign["class_name"]
            assert item["text"] == sign["text"] and item["confidence"] == sign["confidence"]
            assert (item["image_width"], item["image_height"]) == (job["image_width"], job["image_height"])
            # The photo and the crop, as signed links that need no key.
            for link in (item["image_url"], item["crop_url"]):
                opened = httpx.get(f"{gateway}{link}")
                assert opened.status_code == 200 and opened.headers["content-type"].startswith("image/"), link

        # An open-set sign and a reading that disagrees with its class are queued for those reasons.
        first, second = items[0]["id"], items[1]["id"]
        with db.begin() as conn:
            conn.execute(
                text(
                    "UPDATE signs SET class_id = NULL, class_name = 'other sign', class_source = 'shape' WHERE id = :i"
                ),
                {"i": first},
            )
            conn.execute(text("UPDATE signs SET text_matches_class = false WHERE id = :i"), {"i": second})
        by_id = {i["id"]: i for i in queue(alpha)}
        assert by_id[first]["reasons"] == ["low_confidence", "open_set"] and by_id[first]["class_id"] is None
        assert by_id[second]["reasons"] == ["low_confidence", "reading_disagrees"]

        # Another tenant sees none of it, and cannot decide on it.
        assert not {i["job_id"] for i in queue(beta)} & {j["id"] for j in jobs.values()}
        refused = beta.post(f"/reviews/{first}", json={"decision": "accept"})
        assert refused.status_code == 404 and refused.json() == {"detail": f"no review item {first}"}
    # Nor does the session's gateway (no keys: the tenant "default").
    assert not {i["job_id"] for i in client.get("/reviews").json()["items"]} & {j["id"] for j in jobs.values()}


def test_the_default_threshold_queues_only_unsure_signs(stack: Stack, jobs: dict) -> None:
    """The same signs through a gateway with the default threshold (0.5): only those below it, or open-set."""
    with extra_gateway(stack, ROADSIGNS_API_KEYS=KEYS) as (base, _pid), _client(base, KEY_A) as alpha:
        for item in queue(alpha):
            assert item["reasons"], item
            assert ("low_confidence" in item["reasons"]) == (item["confidence"] < 0.5)
        assert any(i["job_id"] in {j["id"] for j in jobs.values()} for i in queue(alpha))  # open-set, at least


def test_each_decision_is_recorded_with_who_and_when(gateway: str, jobs: dict, db) -> None:  # type: ignore[no-untyped-def]
    job = jobs["00224.jpg"]
    with _client(gateway, KEY_A) as alpha:
        items = [i for i in queue(alpha) if i["job_id"] == job["id"]]
        assert len(items) >= 3, items
        decisions = [
            (items[0], {"decision": "correct", "class_name": "  Speed limit 40 ", "text": "40"}),
            (items[1], {"decision": "correct", "class_name": "Speed  limit 30", "text": "30"}),  # one of the 43
            (items[2], {"decision": "not_a_sign"}),
            *((item, {"decision": "accept"}) for item in items[3:]),
            (items[0], {"decision": "missed", "bbox": [10, 20, 50, 64], "class_id": 14, "text": "STOP"}),
            (items[0], {"decision": "missed", "bbox": [60, 20, 90, 50], "class_name": "no parking"}),
        ]
        before = datetime.now(UTC) - timedelta(seconds=5)
        recorded = []
        for item, body in decisions:
            answer = alpha.post(f"/reviews/{item['id']}", json=body)
            assert answer.status_code == 201, (body, answer.text)
            review = answer.json()
            assert review["reviewer"] == key_id(KEY_A) and review["decision"] == body["decision"]
            assert before <= datetime.fromisoformat(review["reviewed_at"]) <= datetime.now(UTC) + timedelta(seconds=5)
            recorded.append(review)

        speed40, thirty, not_sign = recorded[0], recorded[1], recorded[2]
        assert (speed40["class_id"], speed40["class_name"], speed40["text"]) == (None, "Speed limit 40", "40")
        assert speed40["bbox"] == items[0]["bbox"] and speed40["item_id"] == items[0]["id"]
        assert (thirty["class_id"], thirty["class_name"], thirty["text"]) == (1, "speed limit 30", "30")
        assert not_sign["bbox"] is None and not_sign["class_id"] is None
        stop, parking = recorded[-2], recorded[-1]
        assert stop["item_id"] is None and stop["bbox"] == [10, 20, 50, 64] and stop["class_id"] == 14
        assert parking["class_id"] is None and parking["class_name"] == "no parking" and parking["text"] == ""

        # Decided items leave the queue; a second decision is a conflict that names the first.
        assert not [i for i in queue(alpha) if i["job_id"] == job["id"]]
        again = alpha.post(f"/reviews/{items[0]['id']}", json={"decision": "accept"})
        assert again.status_code == 409 and f"by {key_id(KEY_A)}" in again.json()["detail"]

    with db.connect() as conn:
        rows = conn.execute(
            text("SELECT tenant, decision, reviewer FROM reviews WHERE job_id = :j ORDER BY id"), {"j": job["id"]}
        ).all()
    assert [(r.tenant, r.decision, r.reviewer) for r in rows] == [
        ("alpha", body["decision"], key_id(KEY_A)) for _, body in decisions
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"decision": "maybe"}, "decision"),
        ({}, "decision"),
        ({"decision": "accept", "class_id": 3}, "accept takes no class_id"),
        ({"decision": "not_a_sign", "text": "x"}, "not_a_sign takes no text"),
        ({"decision": "correct"}, "correct needs class_id, class_name or text"),
        ({"decision": "correct", "class_id": 43}, "class_id"),
        ({"decision": "correct", "class_id": 1, "class_name": "x"}, "not both"),
        ({"decision": "correct", "class_name": "   "}, "class_name must not be blank"),
        ({"decision": "correct", "text": "a\x00b"}, "control characters"),
        ({"decision": "correct", "class_name": "a\ud800"}, "class_name: Input should be a valid string"),  # surrogate
        ({"decision": "correct", "class_id": 1, "bbox": [1, 2, 3, 4]}, "correct takes no bbox"),
        ({"decision": "missed", "class_id": 1}, "missed needs bbox"),
        ({"decision": "missed", "bbox": [1, 2, 3, 4]}, "missed needs class_id"),
        ({"decision": "missed", "bbox": [5, 5, 5, 9], "class_id": 1}, "x2 > x1"),
        ({"decision": "missed", "bbox": [1, 2, 3], "class_id": 1}, "bbox"),
        ({"decision": "missed", "bbox": [1, 2, 1e9, 4], "class_id": 1}, "bbox"),
        ({"decision": "missed", "bbox": [0, 0, 5000, 40], "class_id": 1}, "reaches outside the 1360x800 photo"),
        ({"decision": "accept", "reason": "sure"}, "reason"),
    ],
)
def test_bad_decisions_are_422(gateway: str, jobs: dict, body: dict, message: str) -> None:
    with _client(gateway, KEY_A) as alpha:
        item = next(i for i in queue(alpha) if i["job_id"] == jobs["00501.jpg"]["id"])
        # json.dumps escapes a lone surrogate, which httpx's own encoding cannot send.
        sent = json.dumps(body).encode()
        answer = alpha.post(f"/reviews/{item['id']}", content=sent, headers={"content-type": "application/json"})
        assert answer.status_code == 422, answer.text
        assert message in answer.json()["detail"], answer.json()
        assert item["id"] in {i["id"] for i in queue(alpha)}  # still queued


def test_bad_ids_and_keys(gateway: str) -> None:
    with _client(gateway, KEY_A) as alpha:
        for bad in ("0", "-1", str(2**31), "abc"):
            assert alpha.post(f"/reviews/{bad}", json={"decision": "accept"}).status_code == 422, bad
        assert alpha.post("/reviews/2147483647", json={"decision": "accept"}).status_code == 404
        assert alpha.get("/reviews", params={"limit": 0}).status_code == 422
        assert (
            alpha.post("/reviews/1", content=b"not json", headers={"content-type": "application/json"}).status_code
            == 422
        )
    assert httpx.get(f"{gateway}/reviews").status_code == 401
    assert (
        httpx.post(f"{gateway}/reviews/1", json={"decision": "accept"}, headers={"X-API-Key": "nope"}).status_code
        == 403
    )


def test_export_writes_what_training_reads(stack: Stack, gateway: str, jobs: dict, tmp_path: Path) -> None:
    """00224 is fully reviewed (by the test above): it is exported; 00501, with one sign decided and
    the others still queued, waits."""
    from roadsigns.cli.groundtruth import read_gt
    from roadsigns.training import reviews

    with _client(gateway, KEY_A) as alpha:
        waiting = [i for i in queue(alpha) if i["job_id"] == jobs["00501.jpg"]["id"]]
        assert len(waiting) >= 2, waiting
        assert alpha.post(f"/reviews/{waiting[0]['id']}", json={"decision": "accept"}).status_code == 201
    out = tmp_path / "reviews"
    done = export(stack, out, "alpha")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == json.loads(done.stdout)
    job = jobs["00224.jpg"]
    name = f"{job['id']}.jpg"
    assert manifest["photos"] == 1 and manifest["skipped_photos_with_pending_reviews"] == 1
    assert sorted(p.name for p in (out / "images").iterdir()) == [name]
    assert manifest["version"].startswith("sha256:") and len(manifest["version"]) == 71

    # GTSDB ground truth: the corrected speed-limit 30, the missed STOP sign and the accepted signs
    # of the 43 classes; others.txt: "speed limit 40", the missed "no parking" and accepted open-set
    # signs. "Not a sign" is gone.
    accepted = job["signs"][3:]
    gt = read_gt(out / "gt.txt")[name]
    assert sorted(b.class_id for b in gt) == sorted(
        [1, 14] + [s["class_id"] for s in accepted if s["class_id"] is not None]
    )
    stop = next(b for b in gt if b.class_id == 14)
    assert (stop.left, stop.top, stop.right, stop.bottom) == (10, 20, 49, 63)
    others = sorted(line.rsplit(";", 1)[1] for line in (out / "others.txt").read_text().splitlines())
    assert others == sorted(
        ["Speed limit 40", "no parking"] + [s["class_name"] for s in accepted if s["class_id"] is None]
    )
    assert manifest["boxes"] == len(gt) + len(others) == len(job["signs"]) + 1

    # Training's readers load it: the photo with every box, and crops like gtsrb-train.npz.
    review_set = reviews.read(out)
    assert len(review_set.gt[name]) == len(gt) + len(others)
    assert review_set.images.shape == (len(gt), 32, 32, 3) and review_set.images.dtype == np.uint8
    assert sorted(review_set.labels.tolist()) == sorted(b.class_id for b in gt)
    images, labels = reviews.crops([review_set])
    assert len(images) == len(labels) == len(gt)
    merged, merged_gt, added = reviews.photos([review_set], PHOTOS, {}, tmp_path / "work", single_class=True)
    assert added == [f"{review_set.tag}-{name}"] and (merged / added[0]).read_bytes()[:2] == b"\xff\xd8"
    assert len(merged_gt[added[0]]) == len(gt) + len(others)

    # The same reviews give the same version; the export is an MLflow dataset input.
    again = export(stack, tmp_path / "again", "alpha", "--no-mlflow")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["version"] == manifest["version"] and "mlflow_run_id" not in again.stdout
    run = MlflowClient(stack.mlflow_url).get_run(manifest["mlflow_run_id"])
    inputs = run.inputs.dataset_inputs
    assert [i.dataset.digest for i in inputs] == [manifest["version"][7:19]]
    assert inputs[0].dataset.name == "roadsigns-reviews-alpha" and str(out.resolve()) in inputs[0].dataset.source


def test_export_refuses_clearly(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    refused = export(stack, tmp_path / "full", "alpha")
    assert refused.returncode == 2 and "is not an empty folder" in refused.stderr
    nothing = export(stack, tmp_path / "none", "beta")
    assert nothing.returncode == 2 and "tenant 'beta' has no reviewed photo" in nothing.stderr


# -- the page --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _shown_item(page: Page) -> int:
    item = page.locator("#review-item")
    expect(item).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('#review-photo'); return i.complete && i.naturalWidth > 0; }"
    )
    return int(item.get_attribute("data-item-id") or 0)


def _next_item(page: Page, previous: int) -> None:
    """Wait for the page to move past the item; on a timeout, say what the page shows."""
    try:
        page.wait_for_function(
            "previous => { const i = document.querySelector('#review-item');"
            " return i.hidden || i.dataset.itemId !== previous; }",
            arg=str(previous),
            timeout=15_000,
        )
    except PlaywrightTimeout:
        shown = page.evaluate(
            "() => [document.querySelector('#review-status').textContent,"
            " document.querySelector('#review-message').textContent]"
        )
        raise AssertionError(f"the page stayed on item {previous}: {shown}") from None


def test_reviews_in_the_page_become_a_dataset_training_reads(
    stack: Stack,
    gateway: str,
    browser: Browser,
    db,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """Tenant gamma reviews its photos' signs in Chromium with the keyboard and the mouse: a
    missed sign boxed on the photo, a correction picked from the class list, "not a sign", and
    accepts; `roadsigns dataset export` then writes them, and training's readers load them."""
    from roadsigns.cli.groundtruth import read_gt
    from roadsigns.training import reviews

    with _client(gateway, KEY_G) as gamma:
        made = {name: submit(gamma, name) for name in ("00330.jpg", "00121.jpg")}
        queued = queue(gamma)
    assert len(queued) >= 2, queued

    context = browser.new_context(base_url=gateway, viewport=DESKTOP)
    context.add_init_script(f"localStorage.setItem('roadsigns.apiKey', {KEY_G!r})")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto("/#/reviews")
    expect(page.locator("#review-status")).to_have_text(f"{len(queued)} signs to review")

    # The first sign: its photo with the box drawn where the API says, the proposal beside it.
    first = _shown_item(page)
    assert first == queued[0]["id"]
    expect(page.locator("#review-form")).to_be_hidden()
    screenshot(page, "review.png")
    expect(page.locator("#review-class-name")).to_contain_text(queued[0]["class_name"])
    photo = page.locator("#review-photo").bounding_box()
    proposed = page.locator("#review-proposed").bounding_box()
    assert photo and proposed
    x1, y1, x2, y2 = queued[0]["bbox"]
    scale = photo["width"] / queued[0]["image_width"]
    assert abs(proposed["x"] - (photo["x"] + x1 * scale)) < 3 and abs(proposed["width"] - (x2 - x1) * scale) < 4

    # M: drag a box around a sign the detector missed, name it (a speed limit outside the 43), save.
    page.keyboard.press("m")
    start = (photo["x"] + photo["width"] * 0.10, photo["y"] + photo["height"] * 0.10)
    end = (photo["x"] + photo["width"] * 0.20, photo["y"] + photo["height"] * 0.25)
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(*end)
    page.mouse.up()
    expect(page.locator("#review-form")).to_be_visible()
    page.locator("#review-class").fill("speed limit 40")
    page.locator("#review-text").fill("40")
    page.keyboard.press("Enter")
    expect(page.locator("#review-status")).to_contain_text("Missed sign recorded")
    assert _shown_item(page) == first  # the boxed sign still waits for its decision

    # C: correct it to "stop", picked from the searchable list, with its text.
    page.keyboard.press("c")
    page.locator("#review-class").fill("14 · stop")
    page.locator("#review-text").fill("STOP")
    page.locator("#review-save").click()
    _next_item(page, first)

    # N on the second, A on every other one, until the queue is empty.
    second = _shown_item(page)
    page.keyboard.press("n")
    _next_item(page, second)
    while page.locator("#review-item").is_visible():
        current = _shown_item(page)
        page.keyboard.press("a")
        _next_item(page, current)
    expect(page.locator("#review-status")).to_have_text("Nothing to review: every queued sign has a decision.")
    context.close()
    assert not errors, errors

    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT decision, class_id, class_name, text, x1, y1, x2, y2, reviewer FROM reviews "
                "WHERE tenant = 'gamma' ORDER BY id"
            )
        ).all()
    assert [r.decision for r in rows] == ["missed", "correct", "not_a_sign"] + ["accept"] * (len(queued) - 2)
    assert {r.reviewer for r in rows} == {key_id(KEY_G)}
    missed = rows[0]
    width, height = queued[0]["image_width"], queued[0]["image_height"]
    assert (missed.class_id, missed.class_name, missed.text) == (None, "speed limit 40", "40")
    assert abs(missed.x1 - 0.10 * width) < 3 and abs(missed.y2 - 0.25 * height) < 3
    assert (rows[1].class_id, rows[1].class_name, rows[1].text) == (14, "stop", "STOP")

    # The export: every photo is fully reviewed; training's readers load the corrected sign.
    out = tmp_path / "gamma"
    done = export(stack, out, "gamma", "--no-mlflow")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["photos"] == len(made) and manifest["skipped_photos_with_pending_reviews"] == 0
    first_photo = f"{queued[0]['job_id']}.jpg"
    gt = read_gt(out / "gt.txt")
    corrected = [b for b in gt[first_photo] if b.class_id == 14]
    assert len(corrected) == 1 and abs(corrected[0].left - queued[0]["bbox"][0]) <= 1
    assert (
        f"{first_photo};" in (out / "others.txt").read_text() and "speed limit 40" in (out / "others.txt").read_text()
    )
    review_set = reviews.read(out)
    assert 14 in review_set.labels.tolist() and review_set.images.shape[1:] == (32, 32, 3)
    assert len(review_set.gt) == len(made)
    _, merged_gt, added = reviews.photos([review_set], PHOTOS, {}, tmp_path / "work", single_class=True)
    assert len(added) == len(made) and sum(len(merged_gt[n]) for n in added) == manifest["boxes"]
