"""The web page at GET /, in real headless Chromium against the real gateway and workers.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` Python package; Playwright's
own browser download is not used. Set ROADSIGNS_SCREENSHOTS=docs/screenshots to refresh the
README's screenshots while the tests run.
"""

from __future__ import annotations

import io
import math
import os
import re
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from sqlalchemy import text

from tests.conftest import PHOTOS, read_gt, wait_for_job
from tests.geotag import geotag, moved
from tests.stack import Stack, extra_gateway, wait_until
from tests.test_video import write_video

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
JOB_TIMEOUT_MS = 240_000
STATUS_ORDER = ["waiting", "uploading", "queued", "detecting", "reading", "done"]

# Records every status each job card shows, so a test can check the page followed the job.
RECORD_STATUSES = """
window.__statuses = {};
new MutationObserver((records) => {
  for (const r of records) {
    const title = r.target.querySelector && r.target.querySelector('.job-title');
    if (!title) continue;
    const seen = (window.__statuses[title.textContent] ||= []);
    const status = r.target.getAttribute('data-status');
    if (seen[seen.length - 1] !== status) seen.push(status);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-status'] });

// Every [frames done, frames in all] each video card's progress bar shows, while it shows.
window.__progress = {};
new MutationObserver((records) => {
  for (const r of records) {
    const box = r.target;
    if (!box.classList || !box.classList.contains('job-progress') || box.hidden) continue;
    const seen = (window.__progress[box.closest('.job').querySelector('.job-title').textContent] ||= []);
    const now = [Number(box.dataset.done), Number(box.dataset.total)];
    const last = seen[seen.length - 1];
    if (!last || last[0] !== now[0] || last[1] !== now[1]) seen.push(now);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-done', 'data-total', 'hidden'] });

// Content-Security-Policy violations: none is expected.
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser: Browser, base_url: str, **context_options) -> tuple[Page, list[str], list[str]]:  # type: ignore[no-untyped-def]
    context = browser.new_context(base_url=base_url, **context_options)
    context.add_init_script(RECORD_STATUSES)
    page = context.new_page()
    # Intercept file choosers from the start: turning interception on only inside
    # expect_file_chooser() races the key press that opens one (about 1 run in 8 saw none).
    page.on("filechooser", lambda chooser: None)
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    return page, errors, requests


@pytest.fixture
def desktop(browser: Browser, stack: Stack) -> Iterator[Page]:
    page, errors, requests = open_page(browser, stack.gateway_url, viewport=DESKTOP)
    yield page
    violations = [] if page.is_closed() else page.evaluate("window.__csp")
    page.context.close()
    assert not violations, f"the page broke its Content-Security-Policy: {violations}"
    assert not errors, f"uncaught errors in the page: {errors}"
    outside = [u for u in requests if not u.startswith((stack.gateway_url, "data:", "blob:"))]
    assert not outside, f"the page fetched something from outside the gateway: {outside}"


@pytest.fixture
def phone(browser: Browser, stack: Stack) -> Iterator[Page]:
    page, errors, _ = open_page(browser, stack.gateway_url, viewport=PHONE, is_mobile=True, has_touch=True)
    yield page
    page.context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def submit(client: httpx.Client, name: str) -> dict:
    with open(PHOTOS / name, "rb") as f:
        response = client.post("/jobs", files={"file": (name, f, "image/jpeg")})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["id"])
    assert job["status"] == "done", job
    return job


def as_percent(x: float) -> str:
    return f"{math.floor(x * 100 + 0.5)}%"  # JavaScript's Math.round, not Python's banker's rounding


def screenshot(page: Page, name: str, full_page: bool = False) -> None:
    """Into $ROADSIGNS_SCREENSHOTS when set, as a 256-colour PNG so the README stays light."""
    folder = os.environ.get("ROADSIGNS_SCREENSHOTS")
    if not folder:
        return
    image = Image.open(io.BytesIO(page.screenshot(full_page=full_page))).convert("RGB")
    Path(folder).mkdir(parents=True, exist_ok=True)
    image.quantize(256, method=Image.Quantize.MEDIANCUT).save(Path(folder) / name, optimize=True)


def card_for(page: Page, job_id: str) -> Locator:
    return page.locator(f'#job-list > li[data-job-id="{job_id}"]')


def wait_images(card: Locator, selector: str = "img") -> None:
    card.page.wait_for_function(
        "([card, selector]) => [...card.querySelectorAll(selector)].every(i => i.complete && i.naturalWidth > 0)",
        arg=[card.element_handle(), selector],
    )


def assert_drawn_as_the_api_says(card: Locator, job: dict) -> None:
    """Every sign of the API's answer is a box at its place on the photo, labelled and listed."""
    expect(card).to_have_attribute("data-status", "done")
    wait_images(card)
    signs = job["signs"]
    photo = card.locator("img.photo-img")
    assert photo.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [job["image_width"], job["image_height"]]
    # Pictures load through the job's signed links: no API key in any URL on the page.
    src = photo.get_attribute("src") or ""
    assert src.startswith(f"/jobs/{job['id']}/image?expires=") and "&sig=" in src, src
    urls = card.evaluate("card => [...card.querySelectorAll('img, a')].map(e => e.src || e.href)")
    assert not [u for u in urls if "api_key" in u], urls
    boxes = card.locator(".boxes .box")
    expect(boxes).to_have_count(len(signs))
    # All rectangles in one go, so that no scrolling can happen between two measurements.
    drawn = card.evaluate(
        """card => {
            const rect = (e) => {
                const r = e.getBoundingClientRect();
                return { x: r.x, y: r.y, w: r.width, h: r.height };
            };
            return {
                photo: rect(card.querySelector('img.photo-img')),
                boxes: [...card.querySelectorAll('.boxes .box')].map(rect),
                labels: [...card.querySelectorAll('.boxes .box .box-label')].map(rect),
            };
        }"""
    )
    frame = drawn["photo"]
    sx, sy = frame["w"] / job["image_width"], frame["h"] / job["image_height"]
    assert sx == pytest.approx(sy, rel=0.01), "the photo is shown with its own aspect ratio"

    for i, sign in enumerate(signs):
        box = boxes.nth(i)
        # A sign outside the 43 classes (class_id null) carries no data-class-id.
        assert box.get_attribute("data-class-id") == (None if sign["class_id"] is None else str(sign["class_id"]))
        assert [float(v) for v in box.get_attribute("data-bbox").split(",")] == pytest.approx(sign["bbox"])
        x1, y1, x2, y2 = sign["bbox"]
        rect = drawn["boxes"][i]
        assert rect["x"] - frame["x"] == pytest.approx(x1 * sx, abs=1.5), (i, rect, frame, sign)
        assert rect["y"] - frame["y"] == pytest.approx(y1 * sy, abs=1.5), (i, rect, frame, sign)
        assert rect["w"] == pytest.approx((x2 - x1) * sx, abs=1.5), (i, rect, sign)
        assert rect["h"] == pytest.approx((y2 - y1) * sy, abs=1.5), (i, rect, sign)

        label = box.locator(".box-label")
        expect(label).to_be_visible()
        expect(label.locator(".box-n")).to_have_text(str(i + 1))
        expect(label).to_contain_text(sign["class_name"])
        expect(label).to_contain_text(as_percent(sign["confidence"]))
        if sign["text"]:
            expect(label).to_contain_text(sign["text"])

    # Every label is readable: inside the photo, and no two labels cover each other.
    labels = drawn["labels"]
    for i, a in enumerate(labels):
        assert frame["x"] - 0.5 <= a["x"] and a["x"] + a["w"] <= frame["x"] + frame["w"] + 0.5, (i, a, frame)
        assert frame["y"] - 0.5 <= a["y"] and a["y"] + a["h"] <= frame["y"] + frame["h"] + 0.5, (i, a, frame)
        for j, b in enumerate(labels[:i]):
            overlap_x = min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"])
            overlap_y = min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"])
            assert overlap_x <= 0.5 or overlap_y <= 0.5, f"labels {j + 1} and {i + 1} overlap"

    # The list of signs: same order, each with its crop and its reading.
    items = card.locator(".signs .sign")
    expect(items).to_have_count(len(signs))
    for i, sign in enumerate(signs):
        item = items.nth(i)
        assert item.get_attribute("data-class-id") == (None if sign["class_id"] is None else str(sign["class_id"]))
        expect(item).to_contain_text(sign["class_name"])
        expect(item).to_contain_text(sign["category"])
        if sign["crop_url"]:
            crop = item.locator("img.crop")
            # The same signed link as the API's (expiries are rounded, so both agree for minutes).
            assert crop.get_attribute("src") == sign["crop_url"] and "sig=" in sign["crop_url"]
            assert crop.evaluate("i => i.naturalWidth") > 0
        if sign["text"]:
            expect(item.locator(".sign-text q")).to_have_text(sign["text"])
        else:
            expect(item.locator(".sign-text")).to_have_text("No text read")

    # Per-stage timings, one row per stage the API reported.
    rows = card.locator(".timings .timing")
    expect(rows).to_have_count(len(job["timings_ms"]))
    for key in job["timings_ms"]:
        expect(card.locator(f'.timing[data-key="{key}"]')).to_be_visible()


def test_photos_chosen_by_keyboard_are_followed_and_drawn(desktop: Page, client: httpx.Client) -> None:
    page = desktop
    page.goto("/")
    expect(page).to_have_title(re.compile("roadsigns"))
    zone = page.get_by_role("button", name=re.compile("Choose photos"))
    expect(zone).to_be_visible()
    for _ in range(10):  # Tab from the top of the page reaches the drop zone
        if zone.evaluate("z => z === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(zone).to_be_focused()
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Enter")
    assert chooser.value.is_multiple()
    chooser.value.set_files([PHOTOS / "00224.jpg", PHOTOS / "00330.jpg"])

    cards = page.locator("#job-list > li")
    expect(cards).to_have_count(2)
    for name in ("00224.jpg", "00330.jpg"):
        card = cards.filter(has=page.locator(".job-title", has_text=name))
        expect(card).to_have_attribute("data-status", "done", timeout=JOB_TIMEOUT_MS)
        expect(card.get_by_role("status")).to_contain_text("Done")
        job = client.get(f"/jobs/{card.get_attribute('data-job-id')}").json()
        assert job["filename"] == name and job["status"] == "done"
        assert_drawn_as_the_api_says(card, job)
        if name == "00224.jpg":
            assert {s["class_id"] for s in job["signs"]} >= {1, 9, 28}  # three signs on one post
        # The page followed the job through its stages, in order, from the upload on.
        seen = page.evaluate("name => window.__statuses[name]", name)
        assert seen[-1] == "done" and "queued" in seen, seen
        assert [STATUS_ORDER.index(s) for s in seen] == sorted(STATUS_ORDER.index(s) for s in seen), seen
        # Its own link reopens it.
        assert card.locator("a.job-link").get_attribute("href") == f"#/jobs/{job['id']}"

    # Both new jobs are in the history, newest first.
    history = page.locator("#history-list > li")
    expect(history.first).to_contain_text(re.compile("00224.jpg|00330.jpg"))
    expect(page.locator("#history-list a", has_text="00224.jpg").first).to_be_visible()
    expect(page.locator("#history-list a", has_text="00330.jpg").first).to_be_visible()

    # A card can be closed; the other stays.
    page.get_by_role("button", name="Close 00330.jpg").click()
    expect(cards).to_have_count(1)
    expect(cards.first.locator(".job-title")).to_have_text("00224.jpg")
    page.mouse.move(0, 0)
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "desktop.png", full_page=True)


def test_dropped_files_that_are_refused_show_the_apis_reason(desktop: Page, client: httpx.Client) -> None:
    page = desktop
    junk = b"hello, this is not a photo\n" * 20
    tiny = io.BytesIO()
    Image.new("RGB", (4, 4)).save(tiny, format="PNG")
    files = [("notes.jpg", junk, "image/jpeg"), ("tiny.png", tiny.getvalue(), "image/png")]
    details = {}
    for name, data, mime in files:
        response = client.post("/jobs", files={"file": (name, data, mime)})
        assert response.status_code in (415, 422), response.text
        details[name] = response.json()["detail"]

    page.goto("/")
    # Drag both onto the drop zone, as from a file manager.
    transfer = page.evaluate_handle(
        """files => {
            const dt = new DataTransfer();
            for (const [name, bytes, type] of files) dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
            return dt;
        }""",
        [[name, list(data), mime] for name, data, mime in files],
    )
    zone = page.locator("#dropzone")
    zone.dispatch_event("dragenter", {"dataTransfer": transfer})
    expect(page.locator("body")).to_have_class(re.compile("dragging"))
    zone.dispatch_event("dragover", {"dataTransfer": transfer})
    zone.dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.locator("body")).not_to_have_class(re.compile("dragging"))

    for name, detail in details.items():
        card = page.locator("#job-list > li").filter(has=page.locator(".job-title", has_text=name))
        expect(card).to_have_attribute("data-status", "rejected")
        expect(card.get_by_role("alert")).to_contain_text(detail)
        expect(card.get_by_role("status")).to_have_text("Rejected")
        expect(card.locator(".job-result")).to_be_hidden()
        assert card.get_attribute("data-job-id") is None


def test_past_jobs_reopen_from_the_history_and_by_their_url(
    desktop: Page, browser: Browser, stack: Stack, client: httpx.Client, db
) -> None:  # type: ignore[no-untyped-def]
    page = desktop
    job = submit(client, "00260.jpg")
    # No real input makes a worker fail, so a failed job is written as the tracker would.
    failed_id = uuid.uuid4().hex
    error = "the detector gave up after 3 attempts: CUDA out of memory"
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, status, filename, content_type, blob_key, image_width, image_height, "
                "attempts, error, created_at, updated_at, finished_at) VALUES (:id, 'failed', 'broken.jpg', "
                "'image/jpeg', 'uploads/none.jpg', 1360, 800, 3, :error, now() - interval '1 hour', "
                "now() - interval '1 hour', now() - interval '1 hour')"
            ),
            {"id": failed_id, "error": error},
        )

    page.goto("/")
    link = page.locator(f'#history-list a[href="#/jobs/{job["id"]}"]')
    expect(link).to_contain_text("00260.jpg")
    expect(link).to_contain_text("done")
    link.click()
    expect(page).to_have_url(re.compile(f"#/jobs/{job['id']}$"))
    expect(link).to_have_attribute("aria-current", "page")
    card = card_for(page, job["id"])
    expect(card).to_have_class(re.compile("current"))
    assert_drawn_as_the_api_says(card, job)

    # A fresh tab on the job's own URL shows the same result, with no history clicks.
    other = page.context.new_page()
    other.goto(f"/#/jobs/{job['id']}")
    assert_drawn_as_the_api_says(card_for(other, job["id"]), job)
    other.goto(f"/?job={job['id']}")
    assert_drawn_as_the_api_says(card_for(other, job["id"]), job)
    other.close()

    # A failed job shows its error; an unknown id shows the API's 404 message.
    page.goto(f"/#/jobs/{failed_id}")
    failed = card_for(page, failed_id)
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.get_by_role("alert")).to_contain_text(error)
    expect(failed.locator('.steps li[data-state="failed"]')).to_have_count(1)
    expect(failed.locator(".job-result")).to_be_hidden()
    page.goto("/#/jobs/no-such-job")
    missing = card_for(page, "no-such-job")
    expect(missing).to_have_attribute("data-status", "missing")
    expect(missing.get_by_role("alert")).to_contain_text("no job with id 'no-such-job'")


def test_phone_width_fits_without_sideways_scrolling(phone: Page, client: httpx.Client) -> None:
    page = phone
    job = submit(client, "00224.jpg")
    page.goto(f"/#/jobs/{job['id']}")
    card = card_for(page, job["id"])
    assert_drawn_as_the_api_says(card, job)

    width = page.evaluate("document.documentElement.clientWidth")
    assert width == PHONE["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    sticking_out = page.evaluate(
        """() => [...document.querySelectorAll('body *:not(.skip)')]
            .filter(e => { const r = e.getBoundingClientRect();
                           return r.width > 0 && (r.left < -0.5 || r.right > innerWidth + 0.5); })
            .map(e => e.tagName + '.' + e.className)"""
    )
    assert not sticking_out, sticking_out
    zone = page.locator("#dropzone").bounding_box()
    assert zone is not None and zone["height"] >= 44, "the drop zone is a comfortable tap target"
    expect(page.locator("#history-list")).to_be_visible()
    card.scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "phone.png", full_page=True)


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A second gateway, with API keys on and no workers: enough for the page's key form."""
    stack = Stack.create(tmp_path_factory.mktemp("keyed"), ROADSIGNS_API_KEYS='["web-test-key"]')
    try:
        stack.start_gateway()
        yield stack
    finally:
        stack.close()


def test_a_gateway_with_api_keys_gets_one_from_the_form(browser: Browser, keyed_gateway: Stack) -> None:
    page, errors, _ = open_page(browser, keyed_gateway.gateway_url, viewport=DESKTOP)
    page.goto("/")
    form = page.locator("#key-form")
    expect(form).to_be_visible()
    expect(form).to_contain_text("an API key is required")
    expect(page.locator("#history-status")).to_contain_text("an API key is required")

    page.get_by_label("API key").fill("not-the-key")
    page.get_by_role("button", name="Use this key").click()
    expect(form).to_contain_text("this API key is not valid")

    page.get_by_label("API key").fill("web-test-key")
    page.get_by_label("API key").press("Enter")
    expect(form).to_be_hidden()
    expect(page.locator("#history-status")).to_have_text("No jobs yet.")

    # Uploads carry the key; with no workers here the job stays queued.
    page.set_input_files("#file-input", PHOTOS / "00330.jpg")
    card = page.locator("#job-list > li").first
    expect(card).to_have_attribute("data-status", "queued")
    job_id = card.get_attribute("data-job-id")
    with httpx.Client(base_url=keyed_gateway.gateway_url, headers={"X-API-Key": "web-test-key"}) as client:
        assert client.get(f"/jobs/{job_id}").json()["filename"] == "00330.jpg"

    # The key is remembered by this browser: a new visit needs no form.
    page.reload()
    expect(page.locator(f'#history-list a[href="#/jobs/{job_id}"]')).to_be_visible()
    expect(form).to_be_hidden()

    # The inventory asks with the key too, and its CSV (a plain link cannot send a header) is
    # fetched with it and saved: no job is done here, so it is the header row alone.
    page.goto("/#/inventory")
    expect(page.locator("#inventory-status")).to_contain_text("No located signs yet")
    expect(page.locator("#inventory-body")).to_be_hidden()
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "inventory.csv"
    with httpx.Client(base_url=keyed_gateway.gateway_url, headers={"X-API-Key": "web-test-key"}) as client:
        expected = client.get("/inventory.csv")
    assert expected.status_code == 200
    assert Path(download.value.path()).read_text() == expected.text
    assert expected.text.startswith("lat,lon,class_id")
    expect(form).to_be_hidden()
    page.context.close()
    assert not errors, errors


# ---------- videos ----------


def test_a_video_shows_its_progress_then_its_tracks_on_a_timeline(
    desktop: Page, client: httpx.Client, tmp_path: Path
) -> None:
    page = desktop
    video = write_video(tmp_path / "drive.mp4", PHOTOS / "00224.jpg", seconds=2.0)
    page.goto("/")
    page.set_input_files("#file-input", video)
    card = page.locator("#job-list > li").filter(has=page.locator(".job-title", has_text="drive.mp4"))
    expect(card).to_have_attribute("data-kind", "video")
    expect(card).to_have_attribute("data-status", "done", timeout=JOB_TIMEOUT_MS)
    job = client.get(f"/jobs/{card.get_attribute('data-job-id')}").json()
    assert job["kind"] == "video" and job["status"] == "done" and job["filename"] == "drive.mp4"
    tracks = job["tracks"]
    assert sorted(t["class_id"] for t in tracks) == sorted(b[4] for b in read_gt()["00224.jpg"]), tracks
    expect(card.get_by_role("status")).to_have_text(f"Done: {len(tracks)} signs tracked")

    # The bar showed while the job ran, from the answer to the upload on: frames only went forward.
    seen = page.evaluate("name => window.__progress[name]", "drive.mp4")
    assert seen, "the progress bar never showed"
    assert all(0 <= done <= total and total > 0 for done, total in seen), seen
    assert [done for done, _ in seen] == sorted(done for done, _ in seen), seen
    assert seen[0][1] == job["frames_analysed"], seen  # 2 s at 5 frames a second, known from the upload
    expect(card.locator(".job-progress")).to_be_hidden()
    expect(card.locator(".photo")).to_be_hidden()
    expect(card.locator(".video-summary")).to_have_text(
        f"{job['duration_s']:.1f} s of video, {job['frames_analysed']} frames analysed: "
        f"{len(tracks)} signs tracked, numbered as in the list."
    )

    # A list entry per track, in the API's order: its crop, name, confidence, reading and when seen.
    wait_images(card, ".signs img")  # the photo's <img> stays empty and hidden
    items = card.locator(".signs .vtrack")
    expect(items).to_have_count(len(tracks))
    for i, track in enumerate(tracks):
        item = items.nth(i)
        assert item.get_attribute("data-track-id") == str(track["track_id"])
        expect(item.locator(".sign-name")).to_have_text(f"{i + 1}{track['class_name']}")
        expect(item).to_contain_text(track["category"])
        expect(item).to_contain_text(f"{as_percent(track['confidence'])} sure")
        expect(item).to_contain_text(
            f"Seen {track['first_seen_s']:.1f} s – {track['last_seen_s']:.1f} s · {track['frames']} frames"
        )
        if track["text"]:
            expect(item.locator(".sign-text q")).to_have_text(track["text"])
        else:
            expect(item.locator(".sign-text")).to_have_text("No text read")
        crop = item.locator("img.crop")
        assert crop.get_attribute("src") == track["crop_url"] and "sig=" in track["crop_url"]
        assert crop.evaluate("i => i.naturalWidth") > 0

    # The timeline: a bar per track over the video's length, first to last seen, a mark at its best frame.
    rows = card.locator(".timeline-rows .tl-row")
    expect(rows).to_have_count(len(tracks))
    drawn = card.evaluate(
        """card => [...card.querySelectorAll('.tl-row')].map(row => {
            const lane = row.querySelector('.tl-lane');
            const r = lane.getBoundingClientRect();
            const x = r.x + lane.clientLeft, w = lane.clientWidth;
            const bar = row.querySelector('.tl-bar').getBoundingClientRect();
            const best = row.querySelector('.tl-best').getBoundingClientRect();
            return { start: (bar.x - x) / w, end: (bar.right - x) / w, best: (best.x + best.width / 2 - x) / w,
                     height: bar.height, label: row.getAttribute('aria-label') };
        })"""
    )
    duration = job["duration_s"]
    for i, (track, bar) in enumerate(zip(tracks, drawn, strict=True)):
        assert bar["height"] > 0
        assert bar["start"] == pytest.approx(track["first_seen_s"] / duration, abs=0.01), (i, bar, track)
        assert bar["end"] == pytest.approx(max(track["last_seen_s"] / duration, bar["start"]), abs=0.01), (i, bar)
        assert bar["best"] == pytest.approx(track["best_frame_s"] / duration, abs=0.01), (i, bar, track)
        assert track["class_name"] in bar["label"]
    expect(card.locator(".timeline-axis .tl-tick").first).to_have_text("0 s")

    # The history marks it as a video.
    expect(page.locator(f'#history-list li[data-job-id="{job["id"]}"] .badge-video')).to_have_text("video")


# ---------- the sign inventory ----------

ORIGIN = (48.137154, 11.576124)  # Munich; nowhere near tests/test_inventory.py's points
PLACES = {"origin": ORIGIN, "east": moved(*ORIGIN, east_m=120), "north": moved(*ORIGIN, north_m=120)}
# Other tests leave located signs all over the world in the same tenant: these views ask for
# the few streets around ORIGIN (the API's bbox filter, passed on from the page's address).
AROUND = "11.56,48.13,11.59,48.15"


@pytest.fixture(scope="module")
def geotagged(client: httpx.Client) -> dict[str, dict]:
    """The speed limit 50 photo, geotagged at three places 120 m apart: three signs, done."""
    photo = (PHOTOS / "00330.jpg").read_bytes()
    ids = {}
    for name, (lat, lon) in PLACES.items():
        response = client.post("/jobs", files={"file": (f"{name}.jpg", geotag(photo, lat, lon), "image/jpeg")})
        assert response.status_code == 202, response.text
        ids[name] = response.json()["id"]
    jobs = {name: wait_for_job(client, job_id) for name, job_id in ids.items()}
    for job in jobs.values():
        assert job["status"] == "done" and any(s["class_id"] == 2 for s in job["signs"]), job
    return jobs


def _drawn_points(page: Page) -> list[dict]:
    """Each point's coordinates (its data attributes) and where its centre is on the screen."""
    return page.evaluate(
        """() => [...document.querySelectorAll('#inventory-map .map-point')].map(c => {
            const r = c.getBoundingClientRect();
            const [lon, lat] = [Number(c.dataset.lon), Number(c.dataset.lat)];
            return { lon, lat, x: r.x + r.width / 2, y: r.y + r.height / 2 };
        })"""
    )


def _ours(points: list[dict]) -> dict[str, dict]:
    return {
        name: next(
            p for p in points if p["lat"] == pytest.approx(lat, abs=1e-6) and p["lon"] == pytest.approx(lon, abs=1e-6)
        )
        for name, (lat, lon) in PLACES.items()
    }


def test_the_inventory_plots_a_point_per_sign_offline_and_offers_the_csv(
    desktop: Page, client: httpx.Client, geotagged: dict
) -> None:
    page = desktop
    features = client.get("/inventory", params={"bbox": AROUND}).json()["features"]
    assert len(features) == 3
    page.goto("/")
    page.get_by_role("link", name="Sign inventory").click()
    expect(page).to_have_url(re.compile("#/inventory$"))
    expect(page.locator("#inventory")).to_be_visible()
    everywhere = len(client.get("/inventory").json()["features"])
    expect(page.locator("#inventory-status")).to_have_text(f"{everywhere} located signs")
    page.goto(f"/#/inventory?bbox={AROUND}")  # the same view, filtered by its address
    expect(page.locator("#inventory-status")).to_have_text("3 located signs")

    points = page.locator("#inventory-map .map-point")
    expect(points).to_have_count(len(features))
    assert page.locator("#inventory-map").get_attribute("data-projection") == "equirectangular"
    expect(page.locator("#inventory-map image")).to_have_count(0)  # no tile server: no tiles, no request
    rows = page.locator("#inventory-table tbody tr")
    expect(rows).to_have_count(len(features))
    for i, feature in enumerate(features):
        props, (lon, lat) = feature["properties"], feature["geometry"]["coordinates"]
        point = points.nth(i)
        assert float(point.get_attribute("data-lon")) == lon and float(point.get_attribute("data-lat")) == lat
        assert props["class_name"] in point.locator("title").text_content()
        row = rows.nth(i)
        expect(row.locator(".inv-class")).to_have_text(props["class_name"])
        expect(row.locator(".inv-text")).to_have_text(props["text"] or "—")
        expect(row.locator(".inv-sightings")).to_have_text(str(props["sightings"]))
        expect(row.locator("time")).to_have_attribute("datetime", props["last_seen"])
        expect(row.locator(".inv-where")).to_have_text(f"{lat:.5f}, {lon:.5f}")

    # Placed as on a map: east is right, north is up, and 120 m is the same length either way.
    ours = _ours(_drawn_points(page))
    east = ours["east"]["x"] - ours["origin"]["x"]
    north = ours["origin"]["y"] - ours["north"]["y"]
    assert east > 20 and north > 20, ours
    assert ours["east"]["y"] == pytest.approx(ours["origin"]["y"], abs=1.0), ours
    assert ours["north"]["x"] == pytest.approx(ours["origin"]["x"], abs=1.0), ours
    assert north == pytest.approx(east, rel=0.02), ours
    # The scale bar says as much: its length over its metres is the points' pixels a metre.
    scale = page.locator("#inventory-map .map-scale")
    metres, svg_px = float(scale.get_attribute("data-metres")), float(scale.get_attribute("data-px"))
    ratio = page.evaluate("document.querySelector('#inventory-map').getBoundingClientRect().width / 640")
    assert svg_px * ratio / metres == pytest.approx(east / 120, rel=0.02)
    label = f"{metres / 1000:g} km" if metres >= 1000 else f"{metres:g} m"
    expect(scale.locator("text")).to_have_text(label)

    # Hovering a point lights up its row.
    points.nth(0).hover()
    expect(rows.nth(0)).to_have_class(re.compile("hl"))

    # The CSV link downloads what GET /inventory.csv gives: a row per sign.
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    assert download.value.suggested_filename == "inventory.csv"
    csv_text = Path(download.value.path()).read_text()
    assert csv_text == client.get("/inventory.csv", params={"bbox": AROUND}).text
    assert len(csv_text.strip().splitlines()) == len(features) + 1

    # Back to the photos: the inventory hides.
    page.get_by_role("link", name="Back to the photos").click()
    expect(page.locator("#inventory")).to_be_hidden()


def test_the_inventory_fits_a_phone(phone: Page, client: httpx.Client, geotagged: dict) -> None:
    page = phone
    features = client.get("/inventory", params={"bbox": AROUND}).json()["features"]
    page.goto(f"/#/inventory?bbox={AROUND}")
    expect(page.locator("#inventory-map .map-point")).to_have_count(len(features))
    expect(page.locator("#inventory-table tbody tr")).to_have_count(len(features))
    width = page.evaluate("document.documentElement.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    # The map and the table's box stay on the screen; a wide table scrolls inside its box.
    for selector in ("#inventory-map", ".inventory-table-wrap", "#inventory .section-head"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 0.5, (selector, box)


class TileServer(ThreadingHTTPServer):
    """A stand-in tile server on another origin: a 256 px PNG for any /tiles/{z}/{x}/{y}.png, each path noted."""

    def __init__(self) -> None:
        png = io.BytesIO()
        Image.new("RGB", (256, 256), (200, 220, 200)).save(png, format="PNG")
        self.png, self.paths = png.getvalue(), []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.paths.append(self.path)
                ok = re.fullmatch(r"/tiles/\d+/\d+/\d+\.png", self.path)
                self.send_response(200 if ok else 404)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(server.png) if ok else 0))
                self.end_headers()
                if ok:
                    self.wfile.write(server.png)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def test_a_configured_tile_server_is_drawn_under_the_points(
    browser: Browser, stack: Stack, client: httpx.Client, geotagged: dict
) -> None:
    tiles = TileServer()
    threading.Thread(target=tiles.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{tiles.server_address[1]}"
    template = f"{origin}/tiles/{{z}}/{{x}}/{{y}}.png"
    features = client.get("/inventory", params={"bbox": AROUND}).json()["features"]
    try:
        with extra_gateway(
            stack, ROADSIGNS_MAP_TILE_URL=template, ROADSIGNS_MAP_TILE_ATTRIBUTION="Tiles: the test's own"
        ) as (base, _):
            # The tile server's origin is allowed for images, and only for images; the stack's own
            # gateway (no tile URL) sends the policy it always did.
            csp = httpx.get(f"{base}/").headers["content-security-policy"]
            assert f"img-src 'self' data: blob: {origin};" in csp and csp.count(origin) == 1, csp
            assert origin not in client.get("/").headers["content-security-policy"]
            assert httpx.get(f"{base}/page-config").json()["map_tile_url"] == template
            assert client.get("/page-config").json() == {"map_tile_url": None, "map_tile_attribution": ""}

            page, errors, requests = open_page(browser, base, viewport=DESKTOP)
            page.goto(f"/#/inventory?bbox={AROUND}")
            points = page.locator("#inventory-map .map-point")
            expect(points).to_have_count(len(features))
            assert page.locator("#inventory-map").get_attribute("data-projection") == "web-mercator"
            images = page.locator("#inventory-map .map-tiles image.map-tile")
            expect(images.first).to_be_attached()
            drawn = page.evaluate(
                """() => [...document.querySelectorAll('#inventory-map .map-tile')].map(i => {
                    const r = i.getBoundingClientRect();
                    return { href: i.getAttribute('href'), z: Number(i.dataset.z), x: Number(i.dataset.x),
                             y: Number(i.dataset.y), left: r.x, top: r.y, size: r.width, height: r.height };
                })"""
            )
            hrefs = {t["href"] for t in drawn}
            assert hrefs == {template.format(z=t["z"], x=t["x"], y=t["y"]) for t in drawn}
            # Every tile was fetched from the tile server, and nothing else was asked of it.
            wait_until(lambda: {origin + p for p in tiles.paths} >= hrefs, 20, "the tiles to be fetched")
            assert {origin + p for p in tiles.paths} == hrefs
            assert {u for u in requests if u.startswith(origin)} == hrefs
            assert not [u for u in requests if not u.startswith((base, origin, "data:", "blob:"))]
            # Each point sits where its position falls on its tile (Web Mercator, as XYZ tiles are cut).
            for name, point in _ours(_drawn_points(page)).items():
                z = drawn[0]["z"]
                n = 2**z
                phi = math.radians(point["lat"])
                fx = (point["lon"] + 180) / 360 * n
                fy = (1 - math.log(math.tan(phi) + 1 / math.cos(phi)) / math.pi) / 2 * n
                tile = next(t for t in drawn if (t["x"], t["y"]) == (math.floor(fx), math.floor(fy)))
                assert tile["size"] == pytest.approx(tile["height"]) and tile["size"] > 100
                assert point["x"] == pytest.approx(tile["left"] + (fx % 1) * tile["size"], abs=1.0), name
                assert point["y"] == pytest.approx(tile["top"] + (fy % 1) * tile["size"], abs=1.0), name
            # Points above tiles, the attribution shown, and no policy broken.
            assert page.evaluate(
                "() => document.querySelector('.map-tiles').compareDocumentPosition("
                "document.querySelector('.map-points')) & Node.DOCUMENT_POSITION_FOLLOWING"
            )
            expect(page.locator("#inventory-caption")).to_contain_text("Map: Tiles: the test's own")
            assert page.evaluate("window.__csp") == []
            page.context.close()
            assert not errors, errors
    finally:
        tiles.shutdown()
        tiles.server_close()
